"""The publisher's durable state: one SQLite database (WAL) in its state directory.

It holds the publisher's stable id and, per dataset, the state last announced: the file's
stat key, its DatasetInfo's etag and the info as JSON (kept as text: a restart of 100,000
datasets reads them back without parsing one). That one table is both the digest cache (a
restart does not re-read a file whose stat is unchanged) and the last published manifest (a
restart diffs the directory against it and announces what changed while it was down).

The schema has a version: older databases are migrated in place, newer ones are refused.
A lock file keeps a second publisher off the same state.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple, Protocol

from caterva import sqlite
from caterva.config import lock_statedir
from caterva.errors import CatervaError, StateError
from caterva.protocol.seal import Seal

log = logging.getLogger("caterva.publisher")

SCHEMA_VERSION = 3
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE datasets (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    info TEXT NOT NULL,
    etag TEXT NOT NULL
);
"""
# MIGRATIONS[n] upgrades a database from version n to n + 1.
MIGRATIONS: dict[int, str] = {
    1: "DELETE FROM datasets",  # chunk digests became BLAKE3: describe every file again
    # the etag beside the info (read without parsing it), the info as a manifest lists it
    2: """ALTER TABLE datasets ADD COLUMN etag TEXT NOT NULL DEFAULT '';
          UPDATE datasets SET etag = json_extract(info, '$.etag'),
                              info = json_remove(info, '$.proto')""",
}
# a row that can be used as stored: an etag, an info that is a JSON object ending with that
# etag (its last field: entries read it from there)
_SOUND = """length(etag) = 32 AND info GLOB '{*}'
    AND substr(info, -42) = '"etag":"' || etag || '"}'"""
_COLUMNS = "path, size, mtime_ns, inode, info, etag"


class Described(Protocol):
    """What is saved of a dataset (a catalog Entry)."""

    path: str
    stamp: int  # its StatKey packed
    etag: str
    text: str


class StatKey(NamedTuple):
    """What says a file may have changed; equal keys mean 'do not read it again'. Entries
    and scans hold it packed in one int (``stamp``): 100,000 of them are kept and compared at
    each restart, and one int costs a third of a tuple of three."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> StatKey:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)

    @property
    def stamp(self) -> int:
        return stamp(self.size, self.mtime_ns, self.inode)

    @classmethod
    def of_stamp(cls, stamp: int) -> StatKey:
        return cls((stamp >> 64) & _LOW, stamp >> 128, stamp & _LOW)


_LOW = (1 << 64) - 1


def stamp(size: int, mtime_ns: int, inode: int) -> int:
    """A StatKey packed: mtime_ns (signed) above size and inode (64 bits each), so equal
    stamps are equal keys."""
    return mtime_ns << 128 | size << 64 | inode


def stamp_of(st: os.stat_result) -> int:
    return stamp(st.st_size, st.st_mtime_ns, st.st_ino)


class Store:
    def __init__(self, db: sqlite3.Connection, lock_fd: int) -> None:
        self._db = db
        self._lock_fd = lock_fd
        self._mutex = threading.Lock()  # one connection shared by worker threads

    @classmethod
    def open(cls, statedir: Path) -> Store:
        lock_fd = lock_statedir(statedir, "publisher")
        try:
            db = sqlite.connect(statedir / "publisher.db")
            sqlite.upgrade(
                db,
                what="publisher state",
                where=f"the publisher state in {statedir}",
                schema=_SCHEMA,
                current=SCHEMA_VERSION,
                migrations=MIGRATIONS,
            )
        except sqlite3.Error as exc:
            os.close(lock_fd)
            raise StateError(f"cannot open the publisher state in {statedir}: {exc}") from exc
        except CatervaError:
            os.close(lock_fd)
            raise
        return cls(db, lock_fd)

    def close(self) -> None:
        with self._mutex:
            self._db.close()
        os.close(self._lock_fd)  # releases the flock

    def identity(self) -> tuple[str, bool]:
        """This publisher's id, generated once and kept for good; True if made just now."""
        with self._mutex:
            return sqlite.identity(self._db)

    def seal(self) -> Seal | None:
        """The seal of the last manifest served (its version is where the next one goes on)."""
        with self._mutex:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'seal'").fetchone()
        try:
            return Seal.from_bytes(row[0]) if row else None
        except CatervaError:
            raise StateError("the publisher state holds an unreadable seal") from None

    def save_seal(self, seal: Seal) -> None:
        with self._mutex:  # one statement: autocommitted
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('seal', ?)", (seal.to_bytes().decode(),)
            )

    def load(self) -> dict[str, tuple[int, str]]:
        """path -> (stamp of its stat key, info JSON) of each dataset last announced.
        The JSON is parsed only when the dataset is used (caterva.protocol.metadata.info_of);
        SQLite checks each row's shape (100,000 rows: 0.15 s, a third of a check in Python).
        Rows are taken as they come, not fetched all first: 100,000 rows alive beside what is
        made of them raised a restart's peak by ~15 MiB."""
        out = {}
        with self._mutex:
            for path, size, mtime_ns, inode, info, sound in self._db.execute(
                f"SELECT path, size, mtime_ns, inode, info, {_SOUND} FROM datasets"
            ):
                if sound:
                    out[path] = (stamp(size, mtime_ns, inode), info)
                else:  # the file is described again and announced
                    log.warning("dropping an unreadable state row for %r", path)
        return out

    def save(self, entry: Described) -> None:
        self.save_all([entry])

    def save_all(self, entries: Iterable[Described]) -> None:
        # made as they are stored: a first start saves 100,000 at once
        rows = ((e.path, *StatKey.of_stamp(e.stamp), e.text, e.etag) for e in entries)
        with self._mutex, sqlite.transaction(self._db):
            self._db.executemany(
                f"INSERT OR REPLACE INTO datasets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", rows
            )

    def delete(self, path: str) -> None:
        with self._mutex:  # one statement: autocommitted
            self._db.execute("DELETE FROM datasets WHERE path = ?", (path,))
