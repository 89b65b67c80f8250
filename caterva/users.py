"""Accounts and per-root grants, in one SQLite database managed by ``caterva user ...``.

    users   email (lowercase), argon2 password hash, when created
    grants  (email, root): the roots a user may read; none by default

Services open it read-only and read it on every request (a grant or revoke takes effect on
the next request, no restart), so only the admin CLI ever writes. The schema has a version:
an older database is migrated in place, a newer one is refused with a clear message.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Self

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from caterva import sqlite
from caterva.errors import BadRequest, NotFound, StateError
from caterva.protocol.names import check_root

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE users (
    email TEXT PRIMARY KEY,
    password TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE grants (
    email TEXT NOT NULL REFERENCES users(email) ON DELETE CASCADE,
    root TEXT NOT NULL,
    granted REAL NOT NULL,
    PRIMARY KEY (email, root)
) WITHOUT ROWID;
"""

# MIGRATIONS[n] upgrades a database from version n to n + 1.
MIGRATIONS: dict[int, str] = {}

_EMAIL = re.compile(r"[^@\s:/]+@[^@\s:/]+")
_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters


@cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown: a wrong email costs what a wrong password
    does, so timing does not tell which accounts exist."""
    return _HASHER.hash("not a password")


def check_email(email: str) -> str:
    """The canonical form of an account name: trimmed, lowercase, ``name@domain``."""
    email = email.strip().lower() if isinstance(email, str) else ""
    if not _EMAIL.fullmatch(email) or len(email) > 254:
        raise BadRequest(f"invalid email {email!r}: use name@domain")
    return email


@dataclass(frozen=True)
class User:
    email: str
    created: float
    roots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"email": self.email, "created": self.created, "roots": self.roots}


class Users:
    """The users database. ``Users.open(path)`` for the admin (creates, migrates);
    ``Users.open(path, readonly=True)`` for services (never writes, never creates)."""

    def __init__(self, db: sqlite3.Connection, path: Path, clock: Callable[[], float]) -> None:
        self.db = db
        self.path = path
        self.clock = clock
        # a service shares one connection between the event loop and worker threads; held
        # only around queries, never around argon2 (slow on purpose)
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls, path: str | Path, *, readonly: bool = False, clock: Callable[[], float] = time.time
    ) -> Users:
        path = Path(path).expanduser()
        if readonly and not path.is_file():
            raise StateError(
                f"no users database at {path}: create one with `caterva user add EMAIL "
                f"--users {path}`"
            )
        try:
            if not readonly:
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                path.touch(mode=0o600, exist_ok=True)  # password hashes: owner only
            # a rollback journal, not WAL: a read-only reader of a WAL database needs write
            # access beside it (the -shm file), which a service may not have
            db = sqlite.connect(path, readonly=readonly, wal=False)
            users = cls(db, path, clock)
            users._upgrade(readonly)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"cannot open the users database {path}: {exc}") from exc
        return users

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _upgrade(self, readonly: bool) -> None:
        sqlite.upgrade(
            self.db,
            what="users",
            where=str(self.path),
            schema=_SCHEMA,
            current=SCHEMA_VERSION,
            migrations=MIGRATIONS,
            readonly_hint="run any `caterva user` command once to migrate it" if readonly else None,
        )

    def version(self) -> int:
        return sqlite.version(self.db)

    # --- the admin's side --------------------------------------------------------------------

    def add(self, email: str, password: str) -> User:
        email = check_email(email)
        _check_password(password)
        hashed = _HASHER.hash(password)
        now = self.clock()
        try:
            self.db.execute("INSERT INTO users VALUES (?, ?, ?)", (email, hashed, now))
        except sqlite3.IntegrityError:
            raise BadRequest(
                f"user {email} exists: change the password with `caterva user passwd {email}`"
            ) from None
        return User(email, now)

    def set_password(self, email: str, password: str) -> None:
        email = check_email(email)
        _check_password(password)
        cursor = self.db.execute(
            "UPDATE users SET password=? WHERE email=?", (_HASHER.hash(password), email)
        )
        if cursor.rowcount == 0:
            raise _no_user(email)

    def remove(self, email: str) -> None:
        email = check_email(email)
        if self.db.execute("DELETE FROM users WHERE email=?", (email,)).rowcount == 0:
            raise _no_user(email)

    def grant(self, email: str, root: str) -> bool:
        """Let ``email`` read ``root``; False when it already could."""
        email, root = check_email(email), check_root(root)
        with sqlite.transaction(self.db):
            self._require(email)
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO grants VALUES (?, ?, ?)", (email, root, self.clock())
            )
        return cursor.rowcount == 1

    def revoke(self, email: str, root: str) -> bool:
        """Take ``root`` away from ``email``; False when it had no grant."""
        email, root = check_email(email), check_root(root)
        with sqlite.transaction(self.db):
            self._require(email)
            cursor = self.db.execute("DELETE FROM grants WHERE email=? AND root=?", (email, root))
        return cursor.rowcount == 1

    def list(self) -> list[User]:
        grants: dict[str, list[str]] = {}
        for email, root in self.db.execute("SELECT email, root FROM grants ORDER BY root"):
            grants.setdefault(email, []).append(root)
        return [
            User(email, created, grants.get(email, []))
            for email, created in self.db.execute("SELECT email, created FROM users ORDER BY email")
        ]

    def require(self, email: str) -> str:
        """The canonical email of an existing account; NotFound otherwise."""
        email = check_email(email)
        self._require(email)
        return email

    def _require(self, email: str) -> None:
        if not self.db.execute("SELECT 1 FROM users WHERE email=?", (email,)).fetchone():
            raise _no_user(email)

    # --- the services' side (read-only) ------------------------------------------------------

    def verify(self, email: str, password: str) -> str | None:
        """The canonical email when the password is right, else None (slow: argon2)."""
        try:
            email = check_email(email)
        except BadRequest:
            email = ""
        with self._lock:
            row = self.db.execute("SELECT password FROM users WHERE email=?", (email,)).fetchone()
        try:
            _HASHER.verify(row[0] if row else _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            return None
        return email if row else None

    def roots_of(self, email: str) -> frozenset[str] | None:
        """The roots ``email`` may read; None when there is no such user (any more)."""
        with self._lock:
            rows = self.db.execute(
                "SELECT g.root FROM users u LEFT JOIN grants g ON g.email = u.email "
                "WHERE u.email=?",
                (email,),
            ).fetchall()
        if not rows:
            return None
        return frozenset(root for (root,) in rows if root is not None)


def _check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < 8:
        raise BadRequest("the password must have at least 8 characters")


def _no_user(email: str) -> NotFound:
    return NotFound(f"no user {email}: add one with `caterva user add {email}`")
