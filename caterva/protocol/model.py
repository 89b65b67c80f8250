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
from collections.abc import Callable
from typing import (
    Any,
    ClassVar,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from caterva.errors import ProtocolError

PROTO = 1

M = TypeVar("M", bound="Model")


@dataclasses.dataclass(frozen=True)
class Model:
    max_bytes: ClassVar[int | None] = None  # from_bytes refuses bigger payloads (MQTT ones)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form. Shares its lists and dicts with the model (models are frozen, and
        asdict's deep copy of a 1,000-dataset manifest cost more than its encoding)."""
        return {"proto": PROTO, **_plain(self)}

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls: type[M], payload: bytes | str) -> M:
        if cls.max_bytes is not None and len(payload) > cls.max_bytes:
            raise ProtocolError(
                f"{cls.__name__}: payload of {len(payload):,} bytes, more than "
                f"the {cls.max_bytes:,} one may have"
            )
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"{cls.__name__}: payload is not JSON") from exc
        except RecursionError:  # json's own limit on nesting, which no payload of ours nears
            raise ProtocolError(f"{cls.__name__}: payload is nested too deeply") from None
        proto = body.get("proto") if isinstance(body, dict) else None
        if not isinstance(proto, int) or isinstance(proto, bool) or proto < 1:
            raise ProtocolError(f"{cls.__name__}: missing or invalid protocol number")
        return cls.from_dict(body)

    @classmethod
    def from_dict(cls: type[M], body: Any) -> M:
        if not isinstance(body, dict):
            raise ProtocolError(f"{cls.__name__}: expected a JSON object")
        values = {}
        for name, convert, required in _fields(cls):
            if name in body:
                try:
                    values[name] = convert(body[name])
                except _Wrong:
                    raise ProtocolError(f"{cls.__name__}.{name} has the wrong type") from None
            elif required:
                raise ProtocolError(f"{cls.__name__}: missing field {name!r}")
        try:
            return cls(**values)
        except ValueError as exc:  # invariants checked in __post_init__
            raise ProtocolError(f"{cls.__name__}: {exc}") from exc


def _plain(value: Any) -> Any:
    if isinstance(value, Model):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list) and value and isinstance(value[0], Model):
        return [_plain(v) for v in value]
    return value


class _Wrong(Exception):
    """A value of the wrong type (named by the field that holds it)."""


@functools.cache
def _fields(cls: type) -> list[tuple[str, Callable[[Any], Any], bool]]:
    """(name, converter, required) per field, built once per class: a manifest decodes
    thousands of DatasetInfos, and inspecting type hints per value cost more than the JSON."""
    hints = get_type_hints(cls)
    return [
        (
            f.name,
            _converter(hints[f.name]),
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    ]


@functools.cache
def _converter(hint: Any) -> Callable[[Any], Any]:
    """A function that checks (and converts) a JSON value for ``hint``, raising _Wrong."""
    origin = get_origin(hint)
    if hint is Any:
        return lambda value: value
    if isinstance(hint, type) and issubclass(hint, Model):
        return hint.from_dict
    if origin is Literal:
        allowed = get_args(hint)
        return _checked(lambda value: value in allowed)
    if origin is list:
        (item,) = get_args(hint) or (Any,)
        convert = _converter(item)

        def each(value: Any) -> list:
            if not isinstance(value, list):
                raise _Wrong
            return [convert(v) for v in value]

        return each
    if origin is dict:
        return _checked(lambda value: isinstance(value, dict))
    if origin in (Union, types.UnionType):
        options = [_converter(arg) for arg in get_args(hint)]

        def first(value: Any) -> Any:
            for convert in options:
                try:
                    return convert(value)
                except (_Wrong, ProtocolError):
                    pass
            raise _Wrong

        return first
    if hint is type(None):
        return _checked(lambda value: value is None)
    if hint is int:
        return _checked(lambda value: isinstance(value, int) and not isinstance(value, bool))
    if hint is float:

        def real(value: Any) -> float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            raise _Wrong

        return real
    return _checked(lambda value: isinstance(value, hint))


def _checked(ok: Callable[[Any], bool]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if ok(value):
            return value
        raise _Wrong

    return check
