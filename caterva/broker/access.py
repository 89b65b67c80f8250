"""MQTT accounts and topic rules for ``caterva bro --password-file PATH``, for both engines.

The password file has one ``username:password`` per line, the password either in plain text
or hashed the way Mosquitto 2.0's ``mosquitto_passwd -H sha512-pbkdf2`` writes it::

    $7$<iterations>$<base64 salt (12 bytes)>$<base64 PBKDF2-HMAC-SHA512 (64 bytes)>

The broker never rewrites that file: it writes a hashed copy into its statedir (0600), read by
Mosquitto (``password_file``) and by the embedded engine's plugin alike. The rules:

    anonymous clients            refused
    every account                reads  caterva/v1/#  and writes caterva/v1/discover
    account U                    writes caterva/v1/pub/U/#   (its own subtree, nothing else)

So a publisher's id must be its username. Usernames use the root-name alphabet (no ``/``,
``+``, ``#``, ``:``), which keeps the ``%u`` substitution of Mosquitto's ACL exact.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from caterva import atomic
from caterva.errors import BadRequest, InvalidName
from caterva.protocol import topics
from caterva.protocol.names import check_root

ITERATIONS = 20_000  # ~25 ms per check: once per connection, not per message
SALT_BYTES = 12  # what Mosquitto uses

# Mosquitto ACL: "pattern" lines apply to every user ("topic" lines before any "user" line
# would apply only to anonymous clients)
MOSQUITTO_ACL = f"""\
# written by `caterva bro --password-file`; rewritten on every start
pattern read {topics.PREFIX}/#
pattern write {topics.DISCOVER}
pattern write {topics.PREFIX}/pub/%u/#
"""


def hash_password(password: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest, validate=True)
        got = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt, validate=True), int(iterations)
        )
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, expected)


def _is_hash(text: str) -> bool:
    return text.startswith("$") and text.count("$") >= 3


def read_accounts(path: str | os.PathLike) -> dict[str, str]:
    """username -> $7$ hash, from a password file with plain or hashed passwords."""
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except OSError as exc:
        raise BadRequest(f"cannot read the password file {path}: {exc.strerror or exc}") from exc
    accounts: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, secret = line.partition(":")
        where = f"{path}, line {number}"
        if not sep or not secret:
            raise BadRequest(f"{where}: expected USERNAME:PASSWORD")
        try:
            check_root(user)
        except InvalidName:
            raise BadRequest(
                f"{where}: invalid username {user!r}: use letters, digits, '.', '_' or '-'"
            ) from None
        if _is_hash(secret):
            if not secret.startswith("$7$"):
                raise BadRequest(
                    f"{where}: unsupported password hash; use plain text or "
                    "`mosquitto_passwd -H sha512-pbkdf2`"
                )
            accounts[user] = secret
        else:
            accounts[user] = hash_password(secret)
    if not accounts:
        raise BadRequest(f"the password file {path} has no accounts")
    return accounts


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` readable by its owner only, replacing ``path`` atomically."""
    atomic.write(path, text, mode=0o600)
    return path


def password_file_text(accounts: dict[str, str]) -> str:
    return "".join(f"{user}:{hashed}\n" for user, hashed in sorted(accounts.items()))


# --- the rules, for the embedded engine (Mosquitto applies MOSQUITTO_ACL itself) --------------


def _within(topic: str, prefix: str) -> bool:
    return topic == prefix or topic.startswith(prefix + "/")


def may_publish(username: str | None, topic: str | None) -> bool:
    if not username or not topic:
        return False
    return topic == topics.DISCOVER or _within(topic, f"{topics.PREFIX}/pub/{username}")


def may_read(topic_filter: str | None) -> bool:
    """A subscription (or a delivery) under caterva/v1/; wildcards only inside it."""
    if not topic_filter or topic_filter == topics.PREFIX:
        return False
    return _within(topic_filter, topics.PREFIX)
