"""A subscriber's durable state in one SQLite database (WAL): followed roots, the datasets
they hold, and the cache index (which chunks are present, their digests, sizes, last access).

The schema has a version. An older database is migrated in place; a newer one is refused with
a clear message; nothing is ever reset silently. Followed roots are user state; cached chunks
are re-fetchable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from caterva import sqlite
from caterva.protocol.metadata import DatasetInfo
from caterva.protocol.topics import check_pub_id, new_pub_id

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE roots (
    name TEXT PRIMARY KEY,
    manifest_etag TEXT,
    followed_at REAL NOT NULL
);
CREATE TABLE datasets (
    id INTEGER PRIMARY KEY,
    root TEXT NOT NULL REFERENCES roots(name) ON DELETE CASCADE,
    path TEXT NOT NULL,
    info TEXT NOT NULL,
    UNIQUE (root, path)
);
CREATE TABLE chunks (
    dataset INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    atime REAL NOT NULL,
    PRIMARY KEY (dataset, idx)
) WITHOUT ROWID;
CREATE INDEX chunks_by_atime ON chunks (atime);
"""

# MIGRATIONS[n] upgrades a database from version n to n + 1.
MIGRATIONS: dict[int, str] = {}


@dataclass
class Dataset:
    """A dataset of a followed root as this subscriber knows it. ``info`` is replaced (never
    mutated) when the source announces a change."""

    id: int
    root: str
    info: DatasetInfo

    @property
    def path(self) -> str:
        return self.info.path


class State:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._upgrade()

    def _upgrade(self) -> None:
        sqlite.upgrade(
            self.db, what="subscriber state", where=str(self.path), schema=_SCHEMA,
            current=SCHEMA_VERSION, migrations=MIGRATIONS,
        )

    def transaction(self):
        return _Transaction(self.db)

    def close(self) -> None:
        self.db.close()

    def identity(self) -> str:
        """This subscriber's pub_id as a mirror: made once, kept with the state for good."""
        with self.transaction():
            row = self.db.execute("SELECT value FROM meta WHERE key='pub_id'").fetchone()
            if row:
                return check_pub_id(row[0])
            pub_id = new_pub_id()
            self.db.execute("INSERT INTO meta VALUES ('pub_id', ?)", (pub_id,))
        return pub_id

    # --- roots -------------------------------------------------------------------------------

    def followed(self) -> dict[str, str | None]:
        """Followed root names and the manifest etag each was last synced to."""
        return dict(self.db.execute("SELECT name, manifest_etag FROM roots"))

    def follow(self, root: str, now: float) -> None:
        self.db.execute("INSERT OR IGNORE INTO roots VALUES (?, NULL, ?)", (root, now))

    def unfollow(self, root: str) -> list[int]:
        """Forget a root; returns the ids of its datasets (their chunk files must go too)."""
        with self.transaction():
            ids = [r[0] for r in self.db.execute("SELECT id FROM datasets WHERE root=?", (root,))]
            self.db.execute("DELETE FROM roots WHERE name=?", (root,))
        return ids

    def set_manifest_etag(self, root: str, etag: str) -> None:
        self.db.execute("UPDATE roots SET manifest_etag=? WHERE name=?", (etag, root))

    # --- datasets ----------------------------------------------------------------------------

    def datasets(self, root: str | None = None) -> list[Dataset]:
        query, args = "SELECT id, root, info FROM datasets", ()
        if root is not None:
            query, args = query + " WHERE root=?", (root,)
        return [
            Dataset(id, r, DatasetInfo.from_bytes(info))
            for id, r, info in self.db.execute(query + " ORDER BY root, path", args)
        ]

    def put_dataset(self, root: str, info: DatasetInfo) -> int:
        body = info.to_bytes().decode()
        self.db.execute(
            "INSERT INTO datasets (root, path, info) VALUES (?, ?, ?) "
            "ON CONFLICT (root, path) DO UPDATE SET info=excluded.info",
            (root, info.path, body),
        )
        return self.db.execute(
            "SELECT id FROM datasets WHERE root=? AND path=?", (root, info.path)
        ).fetchone()[0]

    def delete_dataset(self, dataset: int) -> None:
        self.db.execute("DELETE FROM datasets WHERE id=?", (dataset,))

    # --- the cache index ---------------------------------------------------------------------

    def present(
        self, dataset: int, among: list[int] | None = None
    ) -> dict[int, tuple[str, int]]:
        """idx -> (digest, size) of the chunks held for a dataset (of ``among``, if given:
        a read asks about its own chunks, not all of a large dataset's)."""
        query, args = "SELECT idx, digest, size FROM chunks WHERE dataset=?", (dataset,)
        if among:
            query, args = query + " AND idx BETWEEN ? AND ?", (dataset, min(among), max(among))
        return {idx: (digest, size) for idx, digest, size in self.db.execute(query, args)}

    def add_chunks(self, rows: list[tuple[int, int, str, int, float]]) -> None:
        """Index chunks (dataset, idx, digest, size, atime) in one transaction."""
        if rows:
            with self.transaction():
                self.db.executemany("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?)", rows)

    def drop_chunks(self, dataset: int, indices: Iterable[int] | None = None) -> None:
        if indices is None:
            self.db.execute("DELETE FROM chunks WHERE dataset=?", (dataset,))
        else:
            self.db.executemany(
                "DELETE FROM chunks WHERE dataset=? AND idx=?", [(dataset, i) for i in indices]
            )

    def touch(self, uses: dict[tuple[int, int], float]) -> None:
        """Record when (dataset, idx) chunks were last used, in one transaction."""
        with self.transaction():
            self.db.executemany("UPDATE chunks SET atime=? WHERE dataset=? AND idx=?",
                                [(when, dataset, i) for (dataset, i), when in uses.items()])

    def used_bytes(self) -> int:
        return self.db.execute("SELECT COALESCE(SUM(size), 0) FROM chunks").fetchone()[0]

    def cached(self, dataset: int) -> tuple[int, int]:
        """(chunks, bytes) held for a dataset."""
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM chunks WHERE dataset=?", (dataset,)
        ).fetchone()
        return row[0], row[1]

    def oldest(self, limit: int) -> list[tuple[int, int, int]]:
        """The least recently used chunks: (dataset, idx, size)."""
        return list(
            self.db.execute("SELECT dataset, idx, size FROM chunks ORDER BY atime LIMIT ?", (limit,))
        )

    def all_chunks(self) -> set[tuple[int, int]]:
        return set(self.db.execute("SELECT dataset, idx FROM chunks"))

    def dataset_ids(self) -> set[int]:
        return {r[0] for r in self.db.execute("SELECT id FROM datasets")}


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, value, tb) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
