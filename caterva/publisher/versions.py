"""Recent manifest versions, so a subscriber holding an older one gets only what changed.

Each step records the etag a version replaced and the paths whose content changed in it; the
paths changed since etag E are the union of the steps after E's last appearance. Only the last
``size`` steps are kept: a subscriber further behind gets the full manifest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

HISTORY = 64  # manifest versions a delta can start from


class Versions:
    def __init__(self, etag: str, size: int = HISTORY) -> None:
        self.current = etag
        self._steps: deque[tuple[str, frozenset[str]]] = deque(maxlen=size)

    def record(self, etag: str, paths: Iterable[str]) -> None:
        """The manifest is now ``etag``, after ``paths`` changed."""
        if etag != self.current:
            self._steps.append((self.current, frozenset(paths)))
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
