"""A client's stored logins: one token per subscriber URL, in a 0600 JSON file.

The file is setting("token_file") (env ``CATERVA_TOKEN_FILE``, default
``~/.config/caterva/tokens.json``)::

    {"version": 1, "tokens": {"http://127.0.0.1:8471": {"token": ..., "user": ..., "expiry": ...}}}

``caterva login`` stores, ``caterva logout`` drops, and Client/AsyncClient use the token stored
for their URL when given no credentials. Written to a temporary file and renamed, so a crash
never leaves it half-written; created owner-only, since a token is as good as a password.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from caterva import atomic
from caterva.config import setting
from caterva.errors import StateError


def token_file() -> Path:
    return Path(setting("token_file")).expanduser()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read the token file {path}: {exc}; fix or delete it") from exc
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, dict):
        raise StateError(f"the token file {path} is not a caterva token file; fix or delete it")
    return tokens


def _write(path: Path, tokens: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    text = json.dumps({"version": 1, "tokens": tokens}, indent=2, sort_keys=True) + "\n"
    atomic.write(path, text, mode=0o600)


def load(url: str) -> str | None:
    """The token stored for ``url``, if any (an unreadable file counts as none)."""
    try:
        entry = _read(token_file()).get(url)
    except StateError:
        return None
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) else None


def store(url: str, token: str, **detail: Any) -> Path:
    path = token_file()
    tokens = _read(path)
    tokens[url] = {"token": token, **detail}
    _write(path, tokens)
    return path


def drop(url: str) -> bool:
    """Forget the token of ``url``; False when there was none."""
    path = token_file()
    tokens = _read(path)
    if tokens.pop(url, None) is None:
        return False
    _write(path, tokens)
    return True
