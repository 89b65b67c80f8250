"""SQLite, one way for every database caterva keeps: connect, transactions, versioned
schemas, and a stable identity.

A connection is in autocommit mode (each statement commits by itself) with foreign keys on and
a busy timeout (another process, such as `caterva trust` or `caterva user`, may be writing);
``transaction`` groups statements, and a transaction opened inside another joins it.

The schema version lives in SQLite's own ``PRAGMA user_version`` (0: a new, empty database). A
new database gets the schema; an older one is migrated in place, one step at a time, in one
transaction; a newer one is refused with a clear message. Nothing is ever reset silently.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from caterva.errors import StateError
from caterva.protocol.topics import check_pub_id, new_pub_id

BUSY_TIMEOUT_MS = 5000


def connect(path: str | Path, *, readonly: bool = False, wal: bool = True) -> sqlite3.Connection:
    """A connection any thread may use (callers that share one serialize their use).

    ``wal``: write-ahead log with ``synchronous=NORMAL`` (a crash loses at most the last
    commits, never consistency); readers never wait for the writer. ``readonly`` opens an
    existing database that this process must never write (nor create).
    """
    if readonly:
        db = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys = ON")
        if wal and not readonly:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        db.close()
        raise
    return db


def transaction(db: sqlite3.Connection) -> _Transaction:
    """``with transaction(db):`` BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error). Inside another
    transaction it is part of that one: the outermost commits or rolls back everything."""
    return _Transaction(db)


class _Transaction:
    __slots__ = ("db", "outer")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = False

    def __enter__(self) -> sqlite3.Connection:
        self.outer = not self.db.in_transaction
        if self.outer:
            self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, value, tb) -> None:
        if self.outer:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def version(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def upgrade(
    db: sqlite3.Connection,
    *,
    what: str,
    where: str,
    schema: str,
    current: int,
    migrations: dict[int, str],
    readonly_hint: str | None = None,
) -> None:
    """Bring ``db`` to version ``current``. ``migrations[n]`` goes from n to n + 1.

    With ``readonly_hint`` the caller may not write: a database that needs creating or
    migrating is refused, and the hint says who can fix it.
    """
    found = version(db)
    if found > current:
        raise StateError(
            f"{where} was written by a newer caterva ({what} schema {found}, this one knows "
            f"{current}): upgrade caterva"
        )
    if found == current:
        return
    if readonly_hint is not None:
        state = (
            "is not a caterva database" if found == 0 else f"has an older {what} schema ({found})"
        )
        raise StateError(f"{where} {state}: {readonly_hint}")
    steps = [schema] if found == 0 else [migrations[n] for n in range(found, current)]
    with transaction(db):
        for script in steps:
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute(f"PRAGMA user_version = {int(current)}")


def identity(db: sqlite3.Connection) -> tuple[str, bool]:
    """The pub_id kept in the ``meta`` table (key, value), made once and kept for good; True
    when it was made just now."""
    with transaction(db):
        row = db.execute("SELECT value FROM meta WHERE key = 'pub_id'").fetchone()
        if row:
            return check_pub_id(row[0]), False
        pub_id = new_pub_id()
        db.execute("INSERT INTO meta VALUES ('pub_id', ?)", (pub_id,))
    return pub_id, True
