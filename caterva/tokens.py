"""Login tokens: a JSON payload signed with HMAC-SHA256, and the secret that signs them.

    token   = base64url(payload) "." base64url(HMAC-SHA256(secret, "caterva-token-v1." payload))
    payload = {"v": 1, "user": EMAIL, "issued": UNIX_TIME, "expiry": UNIX_TIME}

Stateless on purpose: a subscriber checks a token without a session table, and tokens survive
restarts because the secret is kept in a 0600 file and never regenerated. What a token's user
may read is *not* in the token: it is looked up in the users database on every request, so a
revoke takes effect at once and a removed user's tokens stop working. The clock is injectable:
tests make expired tokens without sleeping.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from caterva import atomic
from caterva.errors import StateError, TokenExpired, Unauthorized

log = logging.getLogger("caterva.auth")

VERSION = 1
_CONTEXT = b"caterva-token-v1."  # a MAC made for anything else never verifies as a token
MAX_SKEW = 300.0  # seconds a token may claim to be issued in our future (clock drift)
SECRET_BYTES = 32


@dataclass(frozen=True)
class Claims:
    user: str
    issued: float
    expiry: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise StateError("the token secret is too short (at least 16 bytes)")
        self._secret = secret
        self.clock = clock

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._secret, _CONTEXT + body.encode(), hashlib.sha256).digest())

    def issue(self, user: str, ttl: float) -> tuple[str, Claims]:
        now = self.clock()
        claims = Claims(user, now, now + ttl)
        payload = {"v": VERSION, "user": user, "issued": now, "expiry": claims.expiry}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}", claims

    def verify(self, token: str) -> Claims:
        """The claims of a token we signed that has not expired; Unauthorized otherwise."""
        body, dot, mac = token.strip().partition(".")
        if not dot or not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            raise Unauthorized("invalid token: log in again")
        try:  # signed by us, so well-formed unless the format changed under it
            payload = json.loads(_unb64(body))
            claims = Claims(
                str(payload["user"]), float(payload["issued"]), float(payload["expiry"])
            )
            if payload.get("v") != VERSION:
                raise ValueError("unknown token version")
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise Unauthorized("invalid token: log in again") from None
        now = self.clock()
        if now >= claims.expiry:
            raise TokenExpired(f"your login expired at {_when(claims.expiry)}")
        if claims.issued > now + MAX_SKEW:
            raise Unauthorized("invalid token: issued in the future")
        return claims


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def load_secret(path: Path, *, create: bool = True) -> bytes:
    """The signing secret in ``path``, made once (0600) if missing; never regenerated."""
    path = Path(path).expanduser()
    if not path.exists() and create:
        _create_secret(path)
    try:
        text = path.read_text().strip()
        mode = path.stat().st_mode
    except OSError as exc:
        raise StateError(f"cannot read the token secret {path}: {exc.strerror or exc}") from exc
    if mode & 0o077:
        log.warning("the token secret %s is readable by others: chmod 600 it", path)
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = text.encode()  # a configured secret need not be hex
    if len(secret) < 16:
        raise StateError(f"the token secret in {path} is too short (at least 16 bytes)")
    return secret


def _create_secret(path: Path) -> None:
    # never seen half-written, and of two services starting at once both keep the first one's
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic.write(path, secrets.token_hex(SECRET_BYTES) + "\n", mode=0o600, keep=True)
