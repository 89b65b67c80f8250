"""Versioned SQLite schemas, one rule for every database caterva keeps.

The version lives in SQLite's own ``PRAGMA user_version`` (0: a new, empty database). A new
database gets the schema; an older one is migrated in place, one step at a time, in one
transaction; a newer one is refused with a clear message. Nothing is ever reset silently.
"""

from __future__ import annotations

import sqlite3

from caterva.errors import StateError


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
        state = "is not a caterva database" if found == 0 else f"has an older {what} schema ({found})"
        raise StateError(f"{where} {state}: {readonly_hint}")
    steps = [schema] if found == 0 else [migrations[n] for n in range(found, current)]
    db.execute("BEGIN IMMEDIATE")
    try:
        for script in steps:
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute(f"PRAGMA user_version = {int(current)}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
