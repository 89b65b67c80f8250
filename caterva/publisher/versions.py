"""Recent manifest versions, so a subscriber holding an older one gets only what changed.

Each step records the etag a version replaced and the paths whose content changed in it; the
paths changed since etag E are the union of the steps after E's last appearance. Only the last
``size`` steps are kept: a subscriber further behind gets the full manifest.
"""

from __future__ import annotations

import gzip
import re
from collections import deque
from collections.abc import Iterable

from caterva.errors import BadRequest

HISTORY = 64  # manifest versions a delta can start from
ETAG = re.compile(r"[0-9a-f]{32}")  # Manifest.content_etag: blake2b, 16 bytes, hex


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


def check_etag(text: str) -> str:
    """A manifest etag as a client sent it (quotes allowed); BadRequest if it is not one."""
    etag = text.strip().removeprefix("W/").strip('"')
    if not ETAG.fullmatch(etag):
        raise BadRequest(f"since={text[:80]!r} is not a manifest etag (32 hex digits)")
    return etag


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header allows gzip (and does not refuse it with q=0)."""
    for item in (accept_encoding or "").lower().split(","):
        name, _, params = item.partition(";")
        if name.strip() in ("gzip", "*"):
            q = params.strip().removeprefix("q=")
            try:
                return not params.strip() or float(q) > 0
            except ValueError:
                return False
    return False


def compress(body: bytes) -> bytes:
    # level 5: a 45 MB manifest in well under a second, within a few percent of level 9
    return gzip.compress(body, compresslevel=5, mtime=0)
