"""Settings: a flag wins, then a ``CATERVA_*`` environment variable, then ``caterva.toml``.

Every default lives in ``DEFAULTS`` and nowhere else. The config file is ``$CATERVA_CONFIG``,
else ``./caterva.toml``, else ``~/.config/caterva/caterva.toml``; its keys are the names below,
at top level or under a ``[caterva]`` table. A key that is not one of them is refused, naming
the file and the key: a typo must not pass silently (``requre_token`` would leave a service
open), and a service that would warn once at start is easily missed.
"""

from __future__ import annotations

import difflib
import fcntl
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

from caterva.errors import BadRequest, StateError

DEFAULTS: dict[str, Any] = {
    "broker": "mqtt://127.0.0.1:1883",  # where publishers and subscribers find the broker
    "broker_host": "127.0.0.1",  # what `caterva bro` binds
    "broker_port": 1883,
    "publisher_http": "127.0.0.1:8470",  # what `caterva pub` binds
    "subscriber_http": "127.0.0.1:8471",  # what `caterva sub` binds
    "sub": "http://127.0.0.1:8471",  # the subscriber clients talk to
    "statedir": "~/.local/state/caterva",
    "cache_size": "10GiB",
    "scan_interval": 0.2,  # seconds between publisher scans of its directory, with `poll`
    "rescan_interval": 60.0,  # seconds between full scans when filesystem events are watched
    "poll": False,  # a publisher scans every scan_interval instead of watching (NFS)
    "open_files": 64,  # datasets a publisher keeps open for serving (memory: ~75 KB each)
    # a subscriber lists several brokers comma-separated (env) or as a TOML list; the first
    # is its own (the LAN's), where it republishes unless republish_broker says otherwise
    "republish": False,  # `caterva sub` serves and announces the roots it follows, as a mirror
    "republish_broker": "",  # "" = the subscriber's first broker
    "advertise": "",  # the URL a mirror announces; "" = the URL it is bound to
    "prefer": "",  # sources a subscriber reads from first: pub_ids or URLs, comma-separated
    # roots a subscriber follows and keeps whole, fetched ahead of demand (a mirror's night
    # data): comma-separated or a TOML list; `caterva follow ROOT --pin` pins one at run time
    "pin": "",
    "pin_rate": "25MB",  # bytes a second a subscriber fetches for its pinned roots; 0 = no limit
    "trust_file": "",  # signing keys of roots given up front (`ROOT KEY` lines); "" = none
    "log_level": "info",  # every service: debug, info, warning, error
    "log_format": "text",  # every service: text (one line a record) or json (one object a line)
    "access_log": False,  # `caterva pub`/`sub` log every HTTP request
    # `caterva bro`/`pub`/`sub` also serve /metrics, without auth, on this HOST:PORT; "" = no
    "metrics": "",
    # --- security (README, "Security"); "" means "not set" -----------------------------------
    "users": "",  # the users database; "" = <subscriber statedir>/users.db
    "auth": False,  # does `caterva sub` require login (deny by default when on)
    "token_ttl": "12h",  # how long a login token is valid
    "token_secret_file": "",  # the key tokens are signed with; "" = <statedir>/token-secret
    "token_file": "~/.config/caterva/tokens.json",  # a client's stored logins, per subscriber
    # what a subscriber sends to which sources (Authorization: Bearer): URL=TOKEN, comma-
    # separated (or a TOML list); only to sources under one of those URLs
    "source_token": "",
    "source_token_file": "",  # ... or `URL TOKEN` lines in this file (keeps them out of `ps`)
    "require_token": "",  # a publisher answers only requests that carry this token
    "require_token_file": "",  # ... or any of the tokens in this file, one per line
    "pub_id": "",  # a publisher's id; "" = generated once (or the MQTT username)
    "broker_user": "",  # MQTT username, when not in the broker URL
    "broker_password": "",  # MQTT password, when not in the broker URL
    "broker_password_file": "",  # `caterva bro`: MQTT accounts (user:password or user:hash)
    "tls_cert": "",  # a service serves HTTPS (or MQTTS for `caterva bro`) with this certificate
    "tls_key": "",  # ... and this private key
    "ca_file": "",  # clients verify TLS servers against this CA (default: the system's)
    # --- bounds on what a peer may send ------------------------------------------------------
    "max_body": "4MiB",  # the largest request body `pub` and `sub` read (413 beyond)
    "max_source_json": "64MiB",  # the largest manifest or info a subscriber reads from a source
    "source_timeout": "10s",  # how long a source may send nothing before it counts as offline
    # how long a subscriber believes a source's MQTT status without news; then it probes it
    "presence_ttl": "60s",
}

# files in a subscriber's state directory, unless the settings users / token_secret_file say
USERS_FILE = "users.db"
TOKEN_SECRET_FILE = "token-secret"


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
    import tomllib  # not at import: most commands run without a config file (1.5 ms)

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BadRequest(f"cannot read config file {path}: {exc}") from exc
    table = data.get("caterva", data)
    found = {k.replace("-", "_"): v for k, v in table.items()}
    for key in found.keys() - DEFAULTS.keys():
        close = difflib.get_close_matches(key, DEFAULTS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise BadRequest(f"config file {path}: unknown setting {key!r}{hint}")
    return found


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


def setting_list(name: str, flags: list[str] | None = None) -> list[str]:
    """A setting that may hold several values: repeated flags, else comma-separated."""
    if flags:
        return list(flags)
    return [v.strip() for v in str(setting(name)).split(",") if v.strip()]


def _convert(name: str, value: Any, default: Any) -> Any:
    if isinstance(value, list) and isinstance(default, str):
        value = ",".join(map(str, value))  # a TOML list of a setting_list()
    try:
        if isinstance(default, bool):
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        return type(default)(value)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"setting {name}: {value!r} is not a {type(default).__name__}") from exc


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*", re.IGNORECASE)


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


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | float) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``30d``: seconds."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        m = _DURATION.fullmatch(str(text))
        if not m:
            raise BadRequest(f"invalid duration {text!r}: use e.g. 90s, 15m, 12h or 30d")
        seconds = float(m.group(1)) * _SECONDS[m.group(2).lower()]
    if seconds <= 0:
        raise BadRequest(f"invalid duration {text!r}: it must be positive")
    return seconds


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


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only: a loopback address, or localhost."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_address(name: str, flag: str | None = None) -> tuple[str, int]:
    """HOST:PORT a service binds, from its flag or the setting ``name`` (``publisher_http``,
    ``subscriber_http``); a port left out is the one of the setting's default."""
    _, port = parse_hostport(DEFAULTS[name], 0)
    return parse_hostport(setting(name, flag), port)


def statedir(flag: str | os.PathLike | None, service: str) -> Path:
    """Per-service state directory (``<statedir>/<service>``), created 0700."""
    base = Path(setting("statedir", os.fspath(flag) if flag is not None else None)).expanduser()
    path = base / service if flag is None else base
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path.resolve()


def lock_statedir(path: Path, service: str) -> int:
    """Take ``<path>/lock`` (an exclusive flock) for one service; held while the returned
    descriptor is open, so for the process's life unless closed. Two services sharing one
    state directory corrupt each other's state (the second one's writes break the first's)."""
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StateError(
            f"another {service} is using the state directory {path}: "
            "give this one its own --statedir"
        ) from None
    return fd
