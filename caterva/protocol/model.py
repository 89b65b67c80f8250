"""A tiny, strict JSON model base: dataclasses that decode with type checks.

Decoding ignores unknown fields (a newer peer may add some) and rejects wrong types with a
ProtocolError. It is deliberately small: the payloads are small and the CLI must start fast,
so no validation library is imported on this path.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from caterva.errors import ProtocolError

PROTO = 1

M = TypeVar("M", bound="Model")


@dataclasses.dataclass(frozen=True)
class Model:
    def to_dict(self) -> dict[str, Any]:
        return {"proto": PROTO, **dataclasses.asdict(self)}

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls: type[M], payload: bytes | str) -> M:
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"{cls.__name__}: payload is not JSON") from exc
        proto = body.get("proto") if isinstance(body, dict) else None
        if not isinstance(proto, int) or isinstance(proto, bool) or proto < 1:
            raise ProtocolError(f"{cls.__name__}: missing or invalid protocol number")
        return cls.from_dict(body)

    @classmethod
    def from_dict(cls: type[M], body: Any) -> M:
        if not isinstance(body, dict):
            raise ProtocolError(f"{cls.__name__}: expected a JSON object")
        hints = _hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in body:
                values[f.name] = _convert(f"{cls.__name__}.{f.name}", hints[f.name], body[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{cls.__name__}: missing field {f.name!r}")
        try:
            return cls(**values)
        except ValueError as exc:  # invariants checked in __post_init__
            raise ProtocolError(f"{cls.__name__}: {exc}") from exc


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Field types, evaluated once per class (a manifest decodes thousands of DatasetInfos)."""
    return get_type_hints(cls)


def _convert(where: str, hint: Any, value: Any) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if isinstance(hint, type) and issubclass(hint, Model):
        return hint.from_dict(value)
    if origin is Literal:
        if value in get_args(hint):
            return value
    elif origin is list:
        if isinstance(value, list):
            (item,) = get_args(hint) or (Any,)
            return [_convert(where, item, v) for v in value]
    elif origin is dict:
        if isinstance(value, dict):
            return value
    elif origin in (Union, types.UnionType):
        for arg in get_args(hint):
            try:
                return _convert(where, arg, value)
            except ProtocolError:
                pass
    elif hint is type(None):
        if value is None:
            return None
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, hint):
        return value
    raise ProtocolError(f"{where} has the wrong type")
