"""Recent manifest versions, so a subscriber holding an older one gets only what changed.

Each step records the etag a version replaced and the paths whose content changed in it; the
paths changed since etag E are the union of the steps after E's last appearance. Only the last
``size`` steps are kept, naming at most ``paths`` paths in all (a first scan names every
dataset, and a root rewritten whole at each version would keep as many at every step): a
subscriber further behind gets the full manifest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

HISTORY = 64  # manifest versions a delta can start from
PATHS = 10_000  # paths those versions' steps name at most


class Versions:
    def __init__(self, etag: str, size: int = HISTORY, paths: int = PATHS) -> None:
        self.current = etag
        self.size, self.paths = size, paths
        self._steps: deque[tuple[str, frozenset[str]]] = deque()
        self._held = 0  # paths named by the steps kept

    def record(self, etag: str, paths: Iterable[str]) -> None:
        """The manifest is now ``etag``, after ``paths`` changed."""
        if etag == self.current:
            return
        step = list(paths)
        if len(step) > self.paths:  # too many to keep (a first scan): no delta spans it
            self._steps.clear()
            self._held = 0
            self.current = etag
            return
        self._steps.append((self.current, frozenset(step)))
        self._held += len(step)
        while len(self._steps) > self.size or self._held > self.paths:
            self._held -= len(self._steps.popleft()[1])
        self.current = etag

    def changed_since(self, etag: str) -> set[str] | None:
        """Paths changed since the version ``etag``; None when it is not a recent one."""
        if etag == self.current:
            return set()
        changed: set[str] = set()
        for before, paths in reversed(self._steps):
            changed |= paths
            if before == etag:
                return changed
        return None
