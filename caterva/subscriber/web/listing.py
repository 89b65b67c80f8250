"""One page of a root's datasets, for a root of any size: straight from the subscriber's
SQLite index (the ``UNIQUE (root, path)`` index of state.py), never every path in memory.

    folder view   the entries directly under a prefix: its datasets, and one entry per
                  sub-folder, found by skipping over each sub-folder's whole range (two index
                  seeks per entry, whatever the folder holds)
    search        the paths matching a pattern, as ``caterva list`` takes it
                  (caterva/subscriber/listing.py); a word without wildcards: ``**word**``

Both are in path order and paged by a cursor: the last path a page showed, so a page costs
the same at the millionth entry as at the first, and a root that changes between pages
neither repeats nor skips what stayed.
"""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import dataclass

from caterva.subscriber import listing
from caterva.subscriber.state import State

PAGE = 50  # entries a page shows
WILDCARDS = frozenset("*?")


@dataclass(frozen=True)
class Entry:
    name: str  # what the page shows: the last segment(s) under the prefix
    path: str  # the dataset's path, or the folder's prefix (ending in "/")
    folder: bool


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    after: str | None  # the cursor of the next page (None: this is the last)


def _upper(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (None: no bound)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else None


def folder(db: sqlite3.Connection, root: str, prefix: str, after: str = "") -> Page:
    """The entries directly under ``prefix`` ("" or ending in "/") after the path ``after``."""
    upper = _upper(prefix)
    bound = "" if upper is None else " AND path < ?"
    first = f"SELECT path FROM datasets WHERE root = ? AND path > ?{bound} ORDER BY path LIMIT 1"
    last = "SELECT MAX(path) FROM datasets WHERE root = ? AND path >= ? AND path < ?"
    entries: list[Entry] = []
    cursor = max(after, prefix)
    while True:
        row = db.execute(first, (root, cursor, *([upper] if upper else []))).fetchone()
        if row is None:
            return Page(entries, None)
        path = row[0]
        name, slash, _ = path[len(prefix) :].partition("/")
        if len(entries) == PAGE:  # there is more: the next page starts after the last shown
            return Page(entries, cursor)
        if slash:  # a sub-folder: one entry, then past everything it holds
            sub = f"{prefix}{name}/"
            cursor = db.execute(last, (root, sub, _upper(sub))).fetchone()[0]
            entries.append(Entry(name + "/", sub, True))
        else:
            cursor = path
            entries.append(Entry(name, path, False))


def pattern(text: str) -> str:
    """The pattern a search box's text means: itself with wildcards, else ``**text**``."""
    return text if WILDCARDS & set(text) else f"**{text}**"


def search(state: State, root: str, text: str, after: str = "") -> Page:
    """The paths matching the search ``text`` (case-sensitive, as paths are) after ``after``;
    InvalidName for a pattern that points outside the root."""
    found = listing.matches(state, root, listing.parse(pattern(text)), after)
    paths = list(itertools.islice(found, PAGE + 1))
    entries = [Entry(path, path, False) for path in paths[:PAGE]]
    return Page(entries, entries[-1].path if len(paths) > PAGE else None)


def cached(db: sqlite3.Connection, ids: list[int]) -> dict[int, tuple[int, int]]:
    """Dataset id -> (chunks, bytes) the cache holds, for one page's datasets in one query."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = db.execute(
        f"SELECT dataset, COUNT(*), SUM(size) FROM chunks WHERE dataset IN ({marks}) "
        "GROUP BY dataset",
        ids,
    )
    return {dataset: (n, size) for dataset, n, size in rows}
