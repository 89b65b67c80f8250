"""Settings: a flag wins, then a ``CATERVA_*`` environment variable, then ``caterva.toml``.

Every default lives in ``DEFAULTS`` and nowhere else. The config file is ``$CATERVA_CONFIG``,
else ``./caterva.toml``, else ``~/.config/caterva/caterva.toml``; its keys are the names below,
at top level or under a ``[caterva]`` table.
"""

from __future__ import annotations

import os
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from caterva.errors import BadRequest

DEFAULTS: dict[str, Any] = {
    "broker": "mqtt://127.0.0.1:1883",  # where publishers and subscribers find the broker
    "broker_host": "127.0.0.1",  # what `caterva bro` binds
    "broker_port": 1883,
    "publisher_http": "127.0.0.1:8470",  # what `caterva pub` binds
    "subscriber_http": "127.0.0.1:8471",  # what `caterva sub` binds
    "sub": "http://127.0.0.1:8471",  # the subscriber clients talk to
    "statedir": "~/.local/state/caterva",
    "cache_size": "10GiB",
    "scan_interval": 0.2,  # seconds between publisher scans of its directory
}


def config_path() -> Path | None:
    for candidate in (
        os.environ.get("CATERVA_CONFIG"),
        "caterva.toml",
        "~/.config/caterva/caterva.toml",
    ):
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser()
    return None


@cache
def _file_settings(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BadRequest(f"cannot read config file {path}: {exc}") from exc
    table = data.get("caterva", data)
    return {k.replace("-", "_"): v for k, v in table.items() if not isinstance(v, dict)}


def setting(name: str, flag: Any = None) -> Any:
    """The value of one setting, converted to the type of its default."""
    if flag is not None:
        return flag
    default = DEFAULTS[name]
    env = os.environ.get(f"CATERVA_{name.upper()}")
    if env is not None:
        return _convert(name, env, default)
    from_file = _file_settings(config_path())
    if name in from_file:
        return _convert(name, from_file[name], default)
    return default


def _convert(name: str, value: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        return type(default)(value)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"setting {name}: {value!r} is not a {type(default).__name__}") from exc


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str | int) -> int:
    """``10GiB``, ``500MB``, ``1e6``-free plain integers: bytes."""
    if isinstance(text, int):
        return text
    m = _SIZE.fullmatch(str(text))
    if not m:
        raise BadRequest(f"invalid size {text!r}: use e.g. 500MB or 10GiB")
    unit = (m.group(2) or "").lower()
    base = 1024 if "i" in unit else 1000
    power = "kmgt".find(unit[:1]) + 1 if unit[:1] in "kmgt" and unit else 0
    return int(float(m.group(1)) * base**power)


def parse_hostport(text: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``HOST`` -> (host, port); IPv6 as ``[::1]:PORT``."""
    m = re.fullmatch(r"\s*(?:\[([^\]]+)\]|([^:\s]*))(?::(\d{1,5}))?\s*", text)
    if not m:
        raise BadRequest(f"invalid address {text!r}: use HOST:PORT")
    host = m.group(1) or m.group(2) or "127.0.0.1"
    port = int(m.group(3)) if m.group(3) else default_port
    if not 0 <= port <= 65535:
        raise BadRequest(f"invalid port {port}")
    return host, port


def statedir(flag: str | os.PathLike | None, service: str) -> Path:
    """Per-service state directory (``<statedir>/<service>``), created 0700."""
    base = Path(setting("statedir", os.fspath(flag) if flag is not None else None)).expanduser()
    path = base / service if flag is None else base
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path.resolve()
