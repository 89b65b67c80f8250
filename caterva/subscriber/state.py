"""A subscriber's durable state in one SQLite database (WAL): followed roots (and which are
pinned), the datasets they hold, and the cache index (which chunks are present, their digests,
sizes, last access).

The schema has a version. An older database is migrated in place; a newer one is refused with
a clear message; nothing is ever reset silently. Followed roots are user state; cached chunks
are re-fetchable.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from caterva import sqlite
from caterva.protocol.metadata import DatasetInfo, info_json, info_of
from caterva.protocol.seal import Seal
from caterva.subscriber.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class Dataset:
    """One version of a dataset of a followed root. A change makes a new Dataset (same id,
    new info): a request holds the one it started with, so it reads one version throughout.
    The info is held as its JSON text and decoded when used (a bounded cache keeps the
    last ones): 100,000 datasets cost their text, not 100,000 objects."""

    id: int
    root: str
    path: str
    etag: str
    text: str  # caterva.protocol.metadata.info_json

    @classmethod
    def of(cls, id: int, root: str, info: DatasetInfo) -> Dataset:
        return cls(id, root, info.path, info.etag, info_json(info))

    @property
    def info(self) -> DatasetInfo:
        return info_of(self.text)


class State:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite.connect(path)
        sqlite.upgrade(
            self.db,
            what="subscriber state",
            where=str(path),
            schema=SCHEMA,
            current=SCHEMA_VERSION,
            migrations=MIGRATIONS,
        )
        self._bulk: sqlite3.Connection | None = None  # large writes from worker threads
        self._bulk_lock = threading.Lock()

    def transaction(self):
        return sqlite.transaction(self.db)

    def close(self) -> None:
        self.db.close()
        with self._bulk_lock:
            if self._bulk is not None:
                self._bulk.close()

    def version(self) -> tuple[int, int]:
        """Changes whenever the database does, by this connection (total_changes) or another
        one (data_version): what a figure computed from it can be kept until."""
        (other,) = self.db.execute("PRAGMA data_version").fetchone()
        return self.db.total_changes, other

    def identity(self) -> str:
        """This subscriber's pub_id as a mirror: made once, kept with the state for good."""
        return sqlite.identity(self.db)[0]

    # --- roots -------------------------------------------------------------------------------

    def followed(self) -> dict[str, str | None]:
        """Followed root names and the manifest etag each was last synced to."""
        return dict(self.db.execute("SELECT name, manifest_etag FROM roots"))

    def follow(self, root: str, now: float) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO roots (name, followed_at) VALUES (?, ?)", (root, now)
        )

    def unfollow(self, root: str) -> list[int]:
        """Forget a root; returns the ids of its datasets (their chunk files must go too)."""
        with self.transaction():
            ids = [r[0] for r in self.db.execute("SELECT id FROM datasets WHERE root=?", (root,))]
            self.db.execute("DELETE FROM roots WHERE name=?", (root,))
        return ids

    def pinned(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM roots WHERE pinned")}

    def pin(self, root: str, pinned: bool) -> None:
        """Pin a root or not, and its chunks with it (add_chunks marks those to come)."""
        with self.transaction():
            self.db.execute("UPDATE roots SET pinned=? WHERE name=?", (int(pinned), root))
            self.db.execute(
                "UPDATE chunks SET pinned=? WHERE dataset IN "
                "(SELECT id FROM datasets WHERE root=?)",
                (int(pinned), root),
            )

    def seals(self) -> dict[str, Seal]:
        """The seal each followed root was last synced to (roots synced before signing: none)."""
        return {
            name: Seal.from_bytes(seal)
            for name, seal in self.db.execute("SELECT name, seal FROM roots WHERE seal IS NOT NULL")
        }

    def set_synced(self, root: str, etag: str, seal: Seal) -> None:
        _set_synced(self.db, root, etag, seal)

    # --- trusted keys (kept when a root is unfollowed, like ssh's known_hosts) -----------------

    def trusted(self, root: str | None = None) -> dict[str, tuple[str, str, float]]:
        """root -> (key, how it came to be trusted, since when), for one root or all."""
        query, args = "SELECT root, key, how, since FROM trusted_keys", ()
        if root is not None:
            query, args = query + " WHERE root=?", (root,)
        return {r: (key, how, since) for r, key, how, since in self.db.execute(query, args)}

    def trust(self, root: str, key: str, how: str, now: float) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO trusted_keys VALUES (?, ?, ?, ?)", (root, key, how, now)
        )

    def distrust(self, root: str) -> bool:
        return self.db.execute("DELETE FROM trusted_keys WHERE root=?", (root,)).rowcount > 0

    # --- datasets ----------------------------------------------------------------------------

    def datasets(self, root: str | None = None) -> list[Dataset]:
        """Every dataset held (of ``root``), none of their infos parsed."""
        query, args = "SELECT id, root, path, etag, info FROM datasets", ()
        if root is not None:
            query, args = query + " WHERE root=?", (root,)
        return [Dataset(*row) for row in self.db.execute(query + " ORDER BY root, path", args)]

    def dataset_rows(
        self,
        root: str,
        after: str,
        lo: str,
        hi: str | None,
        glob: str | None,
        limit: int,
        summaries: bool = False,
    ) -> list[tuple[str, ...]]:
        """(path,) of at most ``limit`` datasets of ``root`` by path: after ``after``, in
        [lo, hi) (hi None: no bound), matching the SQLite GLOB ``glob`` (None: any); with
        ``summaries``, (path, JSON of its info without chunk digests), cut by SQLite, never
        decoded here. A range scan of the (root, path) index."""
        what = "path, json_remove(info, '$.digests', '$.proto')" if summaries else "path"
        query = f"SELECT {what} FROM datasets WHERE root=? AND path>? AND path>=?"
        args: list[object] = [root, after, lo]
        if hi is not None:
            query, args = query + " AND path<?", [*args, hi]
        if glob is not None:
            query, args = query + " AND path GLOB ?", [*args, glob]
        return self.db.execute(query + " ORDER BY path LIMIT ?", [*args, limit]).fetchall()

    def put_datasets(self, root: str, infos: list[DatasetInfo]) -> dict[str, int]:
        """Record new versions of datasets; path -> dataset id of each."""
        return _put(self.db, root, [(i.path, i.etag, info_json(i)) for i in infos])

    def delete_dataset(self, dataset: int) -> None:
        self.db.execute("DELETE FROM datasets WHERE id=?", (dataset,))

    def synced(
        self,
        root: str,
        gone: list[int],
        rows: list[tuple[str, str, str]],
        etag: str,
        seal: Seal,
    ) -> dict[str, int]:
        """A root moved to the manifest ``etag``: datasets ``gone`` deleted, ``rows`` (path,
        etag, info text) recorded, in one transaction; path -> id of each row. Safe in a
        worker thread: it writes on a connection of its own (the event loop's goes on
        reading meanwhile: WAL)."""
        with self._bulk_lock:
            if self._bulk is None:
                self._bulk = sqlite.connect(self.path)
            with sqlite.transaction(self._bulk):
                self._bulk.executemany("DELETE FROM datasets WHERE id=?", [(i,) for i in gone])
                ids = _put(self._bulk, root, rows)
                _set_synced(self._bulk, root, etag, seal)
        return ids

    # --- the cache index ---------------------------------------------------------------------

    def present(self, dataset: int, among: list[int] | None = None) -> dict[int, tuple[str, int]]:
        """idx -> (digest, size) of the chunks held for a dataset (of ``among``, if given:
        a read asks about its own chunks, not all of a large dataset's)."""
        query, args = "SELECT idx, digest, size FROM chunks WHERE dataset=?", (dataset,)
        if among:
            query, args = query + " AND idx BETWEEN ? AND ?", (dataset, min(among), max(among))
        return {idx: (digest, size) for idx, digest, size in self.db.execute(query, args)}

    def add_chunks(
        self, rows: list[tuple[int, int, str, int, float]]
    ) -> tuple[set[int], list[tuple[int, int, str, int]]]:
        """Index chunks (dataset, idx, digest, size, atime) in one transaction, pinned when
        their root is. Returns the positions of rows refused because their dataset is gone,
        and the rows replaced (dataset, idx, digest, size): what the cache must count and
        remove exactly."""
        if not rows:
            return set(), []
        with self.transaction():
            ids = {r[0] for r in rows}
            known = dict(
                self.db.execute(
                    "SELECT id, pinned FROM datasets JOIN roots ON name = root "
                    f"WHERE id IN ({','.join('?' * len(ids))})",
                    list(ids),
                )
            )
            refused = {n for n, r in enumerate(rows) if r[0] not in known}
            taken = [(*r, known[r[0]]) for n, r in enumerate(rows) if n not in refused]
            replaced = []
            for dataset, idx, *_ in taken:
                row = self.db.execute(
                    "SELECT digest, size FROM chunks WHERE dataset=? AND idx=?", (dataset, idx)
                ).fetchone()
                if row:
                    replaced.append((dataset, idx, *row))
            self.db.executemany("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?)", taken)
        return refused, replaced

    def drop_chunks(
        self, dataset: int, indices: Iterable[int] | None = None
    ) -> list[tuple[int, str, int]]:
        """Forget chunks of a dataset (all when ``indices`` is None); returns the rows
        removed as (idx, digest, size)."""
        with self.transaction():
            if indices is None:
                gone = list(
                    self.db.execute(
                        "SELECT idx, digest, size FROM chunks WHERE dataset=?", (dataset,)
                    )
                )
                self.db.execute("DELETE FROM chunks WHERE dataset=?", (dataset,))
                return gone
            gone = []
            for i in indices:
                row = self.db.execute(
                    "SELECT idx, digest, size FROM chunks WHERE dataset=? AND idx=?", (dataset, i)
                ).fetchone()
                if row:
                    gone.append(row)
            self.db.executemany(
                "DELETE FROM chunks WHERE dataset=? AND idx=?", [(dataset, row[0]) for row in gone]
            )
        return gone

    def touch(self, uses: dict[tuple[int, int], float]) -> None:
        """Record when (dataset, idx) chunks were last used, in one transaction."""
        with self.transaction():
            self.db.executemany(
                "UPDATE chunks SET atime=? WHERE dataset=? AND idx=?",
                [(when, dataset, i) for (dataset, i), when in uses.items()],
            )

    def used_bytes(self) -> int:
        return self.db.execute("SELECT COALESCE(SUM(size), 0) FROM chunks").fetchone()[0]

    def cached(self, dataset: int) -> tuple[int, int]:
        """(chunks, bytes) held for a dataset."""
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM chunks WHERE dataset=?", (dataset,)
        ).fetchone()
        return row[0], row[1]

    def oldest(self, limit: int) -> list[tuple[int, int, str, int]]:
        """The least recently used chunks that may be evicted, none of a pinned root's:
        (dataset, idx, digest, size)."""
        return list(
            self.db.execute(
                "SELECT dataset, idx, digest, size FROM chunks WHERE pinned = 0 "
                "ORDER BY atime LIMIT ?",
                (limit,),
            )
        )

    def root_chunks(self, root: str) -> dict[tuple[int, int], tuple[str, int]]:
        """(dataset, idx) -> (digest, size) of every indexed chunk of a root, in one query."""
        rows = self.db.execute(
            "SELECT dataset, idx, digest, size FROM chunks JOIN datasets ON id = dataset "
            "WHERE root=?",
            (root,),
        )
        return {(d, i): (digest, size) for d, i, digest, size in rows}

    def all_chunks(self) -> dict[tuple[int, int], str]:
        """(dataset, idx) -> digest of every indexed chunk."""
        return {
            (d, i): digest
            for d, i, digest in self.db.execute("SELECT dataset, idx, digest FROM chunks")
        }

    def dataset_ids(self) -> set[int]:
        return {r[0] for r in self.db.execute("SELECT id FROM datasets")}


def _put(db: sqlite3.Connection, root: str, rows: list[tuple[str, str, str]]) -> dict[str, int]:
    """Record (path, etag, info text) rows in one statement; path -> dataset id of each (an id
    stays with its path across versions)."""
    if not rows:
        return {}
    with sqlite.transaction(db):
        db.executemany(
            "INSERT INTO datasets (root, path, etag, info) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (root, path) DO UPDATE SET etag=excluded.etag, info=excluded.info",
            [(root, *row) for row in rows],
        )
        if len(rows) == 1:
            found = db.execute(
                "SELECT path, id FROM datasets WHERE root=? AND path=?", (root, rows[0][0])
            )
        else:
            found = db.execute("SELECT path, id FROM datasets WHERE root=?", (root,))
        return dict(found)


def _set_synced(db: sqlite3.Connection, root: str, etag: str, seal: Seal) -> None:
    db.execute(
        "UPDATE roots SET manifest_etag=?, seal=? WHERE name=?",
        (etag, seal.to_bytes().decode(), root),
    )
