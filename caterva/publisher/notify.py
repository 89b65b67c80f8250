"""Wake the directory watcher as soon as something under DIR changes (Linux inotify).

Polling alone makes a change wait half a scan interval on average before anyone hears of it.
inotify tells at once; the watcher still scans every scan_interval as well, so what inotify
cannot see (network filesystems, a full event queue, an unsupported platform) is still found.

Watched: files closed after writing, created, deleted, moved, or changed attributes, in DIR and
every directory under it (new ones are added as they appear). Not watched: every write of a
file still being written (IN_MODIFY), which would rescan once per write; hidden directories and
the publisher's state directory, which are never published.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import struct
from pathlib import Path

log = logging.getLogger("caterva.publisher")

IN_ATTRIB, IN_CLOSE_WRITE = 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_Q_OVERFLOW, IN_IGNORED, IN_ONLYDIR, IN_ISDIR = 0x4000, 0x8000, 0x1000000, 0x40000000
MASK = IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
SETTLE = 0.025  # seconds without events before a change is scanned


class Changes:
    """``await changes.wait(timeout)``: returns when DIR changed, or after ``timeout``."""

    def __init__(self, directory: Path, skip: Path) -> None:
        self.directory = str(directory)
        self.skip = str(skip)
        self._wake = asyncio.Event()
        self._fd = -1
        self._dirs: dict[int, str] = {}  # watch descriptor -> directory
        self._libc = _libc()

    def start(self) -> bool:
        """Start watching; False (and polling only) where inotify is not available."""
        if self._libc is None:
            return False
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            log.info("inotify unavailable (%s): polling only", os.strerror(ctypes.get_errno()))
            return False
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._read)
        self._add_tree(self.directory)
        return True

    def close(self) -> None:
        if self._fd >= 0:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    async def wait(self, timeout: float) -> None:
        """Until DIR changed and then stayed quiet for SETTLE seconds, or ``timeout`` is up: a
        file rewritten in several steps makes one scan, not one event per step."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
            while (left := deadline - loop.time()) > 0:
                self._wake.clear()
                await asyncio.wait_for(self._wake.wait(), min(SETTLE, left))
        except TimeoutError:
            pass
        self._wake.clear()  # what changes from here on wakes the next wait

    def _add_tree(self, top: str) -> None:
        for current, dirs, _ in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(".")
                       and os.path.join(current, d) != self.skip]
            wd = self._libc.inotify_add_watch(self._fd, os.fsencode(current), MASK | IN_ONLYDIR)
            if wd < 0:  # e.g. the per-user watch limit: what is not watched is still polled
                log.info("cannot watch %s (%s)", current, os.strerror(ctypes.get_errno()))
                return
            self._dirs[wd] = current

    def _read(self) -> None:
        try:
            data = os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return
        offset = 0
        while offset + EVENT.size <= len(data):
            wd, mask, _, size = EVENT.unpack_from(data, offset)
            name = data[offset + EVENT.size : offset + EVENT.size + size].rstrip(b"\0")
            offset += EVENT.size + size
            if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO) and wd in self._dirs:
                self._add_tree(os.path.join(self._dirs[wd], os.fsdecode(name)))
            if mask & IN_IGNORED:  # its directory is gone
                self._dirs.pop(wd, None)
            if mask & IN_Q_OVERFLOW:
                log.info("inotify queue overflowed: the next scan finds what was missed")
        self._wake.set()


def _libc():
    if not hasattr(os, "O_CLOEXEC"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        return libc
    except (OSError, AttributeError):  # no libc by that name, or no inotify in it (not Linux)
        return None
