"""The blosc2 containers a publisher holds open: at most ``size``, least recently used dropped.

An open container costs about 75 KB (and blosc2 keeps a descriptor for many of them), so a
root of 100,000 datasets cannot keep one per dataset. Containers are opened on demand when a
chunk is read and kept in this LRU; one that is evicted, or whose entry was replaced, is
dropped here and freed as soon as the last reader still using it is done (CPython frees it
with its last reference: blosc2 has no close()).

Each container is used by one thread at a time (blosc2 handles are not thread-safe); two
threads reading different datasets do not wait for each other.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any


class _Slot:
    __slots__ = ("container", "lock")

    def __init__(self) -> None:
        self.container: Any = None
        self.lock = threading.Lock()


class OpenFiles:
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"open_files must be at least 1, not {size}")
        self.size = size
        self._slots: OrderedDict[Hashable, _Slot] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._slots)

    @contextmanager
    def use(self, key: Hashable, opener: Callable[[], Any]) -> Iterator[Any]:
        """The container for ``key`` (opened with ``opener()`` if not open), held for the
        ``with`` block by this thread alone."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
                while len(self._slots) > self.size:
                    self._slots.popitem(last=False)
            else:
                self._slots.move_to_end(key)
        with slot.lock:
            if slot.container is None:
                slot.container = opener()
            yield slot.container

    def drop(self, key: Hashable) -> None:
        """Forget ``key``'s container (its file was replaced or removed)."""
        with self._lock:
            self._slots.pop(key, None)
