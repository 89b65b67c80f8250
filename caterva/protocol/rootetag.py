"""The manifest etag of a root whose datasets change a few at a time.

``manifest_etag`` hashes "\\0path\\0etag" for every dataset in path order: 100,000 datasets
cost ~100 ms of joining and sorting per change. RootEtag keeps the paths sorted in blocks, each
block as its share of that text, so a change rebuilds one block and the hash runs over the
kept pieces (the same etag, for ~10 ms). The texts are all it keeps: a block's paths and etags
are read back from its text when it changes (no dict of 100,000 etags beside them).

    index = RootEtag(root, etags)            # path -> etag
    index.etag                               # == manifest_etag(root, etags.items())
    index.etag_with({path: etag or None})    # what it would be after these changes
    index.apply({path: etag or None})        # make it so (None: the dataset is gone)
"""

from __future__ import annotations

import hashlib
import itertools
from bisect import bisect_right
from collections.abc import Mapping

BLOCK = 1024  # paths a block holds (split at twice that)


class RootEtag:
    def __init__(self, root: str, etags: Mapping[str, str]) -> None:
        self.root = root
        paths = sorted(etags)
        blocks = [paths[i : i + BLOCK] for i in range(0, len(paths), BLOCK)] or [[]]
        self._firsts = [b[0] if b else "" for b in blocks]  # each block's first path
        self._texts = [_text(b, etags) for b in blocks]

    @property
    def etag(self) -> str:
        return self.etag_with({})

    def etag_with(self, changes: Mapping[str, str | None]) -> str:
        """The etag once ``changes`` (path -> new etag, None: removed) are made; this index
        is not changed."""
        touched = self._touched(changes)
        h = hashlib.blake2b(self.root.encode(), digest_size=16)
        for i, text in enumerate(self._texts):
            if i in touched:
                etags = _changed(text, touched[i])
                text = _text(sorted(etags), etags)
            h.update(text.encode())
        return h.hexdigest()

    def apply(self, changes: Mapping[str, str | None]) -> None:
        # from the last block touched back: splitting or dropping one moves those after it
        for i, block in sorted(self._touched(changes).items(), reverse=True):
            etags = _changed(self._texts[i], block)
            paths = sorted(etags)
            if len(paths) > 2 * BLOCK:  # split in two
                parts = [paths[:BLOCK], paths[BLOCK:]]
            elif not paths and len(self._texts) > 1:
                parts = []
            else:
                parts = [paths]
            self._firsts[i : i + 1] = [p[0] if p else "" for p in parts]
            self._texts[i : i + 1] = [_text(p, etags) for p in parts]

    def _touched(self, changes: Mapping[str, str | None]) -> dict[int, dict[str, str | None]]:
        """``changes`` by the block each path is (or would be) in: the last one starting at
        or before it."""
        touched: dict[int, dict[str, str | None]] = {}
        for path, etag in changes.items():
            i = max(0, bisect_right(self._firsts, path) - 1)
            touched.setdefault(i, {})[path] = etag
        return touched


def _changed(text: str, changes: Mapping[str, str | None]) -> dict[str, str]:
    """The paths and etags of a block's text, with ``changes`` made."""
    parts = text.split("\0")[1:]
    etags = dict(zip(parts[::2], parts[1::2]))
    for path, etag in changes.items():
        if etag is None:
            etags.pop(path, None)
        else:
            etags[path] = etag
    return etags


def _text(paths: list[str], etags: Mapping[str, str]) -> str:
    # "\0path\0etag" for each path, joined in C
    if not paths:
        return ""
    return "\0" + "\0".join(itertools.chain.from_iterable((p, etags[p]) for p in paths))
