"""Chunks into files, with no network: the Assembler that turns the chunks of a dataset,
received in order, into a verified file (through a ``Placement``, client/placement.py), the
Batch that does so for several datasets of one request, the Meter that sums their progress,
and Behind, which writes while the next chunks travel.

A dataset that changed during the download is an error, not a silent mix of versions. The
client checks the digest each frame carries, not the chunk bytes themselves: the subscriber
verified every chunk against that digest before caching it, and hashing again here cost more
than the rest of a download from a warm cache.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path

from caterva.client.placement import Placement
from caterva.errors import DigestMismatch, ProtocolError
from caterva.protocol.metadata import DatasetInfo

Progress = Callable[[int, int], None]  # (done, total) uncompressed bytes


def chunk_nbytes(info: DatasetInfo, index: int) -> int:
    """Uncompressed bytes chunk ``index`` holds (the last chunk of a byte stream is short)."""
    return max(0, min(info.chunksize, info.nbytes - index * info.chunksize))


class Cancelled(Exception):
    """A download's other parts stop: one failed, or the user pressed Ctrl-C."""


class Meter:
    """Sums progress over the datasets of one download; reports (done, total) bytes.

    It is also how the parts of one download stop together: after ``cancel()`` every part
    fails at its next chunk (``check``), so a root download ends within a chunk of a Ctrl-C
    instead of finishing the requests in flight."""

    def __init__(self, total: int, report: Progress | None) -> None:
        self.total = total
        self.done = 0
        self._report = report
        self._lock = threading.Lock()  # a root's datasets download in parallel
        self._cancelled = threading.Event()
        if report:
            report(0, total)

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.done += nbytes
            if self._report:
                self._report(self.done, self.total)


class Behind:
    """Calls ``fn(*args)`` in one worker thread, in order, at most ``depth`` calls behind.

    A download keeps reading the network while blosc2 writes the chunks it already has (blosc2
    releases the GIL for much of a write). ``close`` waits and raises the first error; ``stop``
    waits and drops it (the caller is failing already).
    """

    def __init__(self, fn: Callable, depth: int = 8) -> None:
        self._fn = fn
        self._queue: queue.Queue = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="caterva-writer", daemon=True)
        self._thread.start()

    def __call__(self, *args) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(args)

    def _run(self) -> None:
        while (args := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._fn(*args)
                except BaseException as exc:  # raised in the caller's thread
                    self._error = exc

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def close(self) -> None:
        self.stop()
        if self._error is not None:
            raise self._error


class Assembler:
    """Chunks of one dataset, fed in order 0..nchunks-1, verified, into ``target``.

    ``open`` / ``add`` / ``finish`` do blocking file I/O: the async client runs them in a
    worker thread. ``abort`` removes the partial file.
    """

    def __init__(self, info: DatasetInfo, target: Path, meter: Meter) -> None:
        self.info = info
        self.target = target
        self.meter = meter
        self._placed: Placement | None = None
        self._writer = None
        self.count = 0

    @property
    def nchunks(self) -> int:
        return self.info.nchunks

    def open(self) -> None:
        from caterva.protocol.layout import FileWriter  # blosc2: only when writing

        if not self.target.parent.is_dir():  # one stat: a root's files share few folders
            self.target.parent.mkdir(parents=True, exist_ok=True)
        self._placed = Placement.of(self.target)
        self._writer = FileWriter(self.info, self._placed.part)

    def add(self, index: int, digest: str, data: bytes | list[memoryview]) -> None:
        self.meter.check()
        if index != self.count:
            raise ProtocolError(f"expected chunk {self.count}, the subscriber sent {index}")
        if index >= self.info.nchunks or digest != self.info.digests[index]:
            raise DigestMismatch(
                f"{self.info.path} changed during the download (chunk {index}): run it again"
            )
        self._writer.add(data)
        self.count += 1
        self.meter.advance(chunk_nbytes(self.info, index))

    def add_all(self, items: list[tuple[int, str, bytes | list[memoryview]]]) -> None:
        for item in items:
            self.add(*item)

    def finish(self) -> Path:
        if self.count != self.info.nchunks:
            raise ProtocolError(f"{self.info.path}: got {self.count} of {self.info.nchunks} chunks")
        self._close()
        self._placed.land()
        return self.target

    def abort(self) -> None:
        try:
            self._close()
        finally:
            if self._placed is not None:
                self._placed.part.unlink(missing_ok=True)

    def _close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()


class Batch:
    """The datasets of one multi-dataset request, each into its target: fed the frames in the
    order asked, it opens each dataset's Assembler at its first chunk and finishes it after
    its last. The same interface as Assembler, so one loop drives either."""

    def __init__(self, targets: list[tuple[DatasetInfo, Path]], meter: Meter) -> None:
        self.targets = targets
        self.meter = meter
        self._next = 0
        self._current: Assembler | None = None

    @property
    def nchunks(self) -> int:
        return sum(info.nchunks for info, _ in self.targets)

    def open(self) -> None:
        pass  # each dataset's file is opened at its first chunk

    def add(self, index: int, digest: str, data: bytes | list[memoryview]) -> None:
        if self._current is None:
            if self._next == len(self.targets):
                raise ProtocolError("the subscriber sent more chunks than asked for")
            self._current = Assembler(*self.targets[self._next], self.meter)
            self._next += 1
            self._current.open()
        self._current.add(index, digest, data)
        if self._current.count == self._current.info.nchunks:
            self._current.finish()
            self._current = None

    def add_all(self, items: list[tuple[int, str, bytes | list[memoryview]]]) -> None:
        for item in items:
            self.add(*item)

    def finish(self) -> None:
        if self._current is not None or self._next < len(self.targets):
            raise ProtocolError(f"the subscriber sent {self._next} of {len(self.targets)} datasets")

    def abort(self) -> None:
        if self._current is not None:
            self._current.abort()
