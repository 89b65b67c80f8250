"""Downloads without the network: where files go, which chunks each batch request asks for,
and the Assembler that turns chunks received in order into a verified file.

A download writes ``DEST.part`` and renames it to DEST only once every chunk arrived and
matched the digest the dataset's info promised, so DEST is never a half-written file and a
dataset that changed during the download is an error, not a silent mix of versions.

The client checks the digest each frame carries, not the chunk bytes themselves: the
subscriber verified every chunk against that digest before caching it, and hashing again here
cost more than the rest of a download from a warm cache.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from caterva.errors import BadRequest, DigestMismatch, ProtocolError
from caterva.protocol import rest
from caterva.protocol.metadata import DatasetInfo

# Chunks asked for in one batch request: about this many uncompressed bytes per request. The
# chunks stream one at a time, so this bounds request count, not memory; each request waits
# for its first chunk, so fewer is faster.
WINDOW_BYTES = 512 * 2**20
# Requests of a root download in flight at once.
ROOT_PARALLEL = 4
# Small datasets of a root share a request (the multi-dataset batch), up to this
# many chunks and uncompressed bytes each; a dataset as big goes alone, in windows.
GROUP_CHUNKS = 256
GROUP_BYTES = 64 << 20


def windows(info: DatasetInfo) -> list[list[int]]:
    per = max(1, min(rest.MAX_BATCH, WINDOW_BYTES // max(info.chunksize, 1)))
    return [list(range(s, min(s + per, info.nchunks))) for s in range(0, info.nchunks, per)]


def chunk_nbytes(info: DatasetInfo, index: int) -> int:
    """Uncompressed bytes chunk ``index`` holds (the last chunk of a byte stream is short)."""
    return max(0, min(info.chunksize, info.nbytes - index * info.chunksize))


def dataset_target(path: str, dest: str | os.PathLike | None) -> Path:
    """Like cp: no dest -> ./NAME; an existing directory -> DIR/NAME; else dest itself."""
    name = PurePosixPath(path).name
    if dest is None:
        return Path(name)
    dest = Path(dest)
    return dest / name if dest.is_dir() else dest


def root_targets(
    root: str, infos: list[DatasetInfo], dest: str | os.PathLike | None
) -> tuple[Path, list[tuple[DatasetInfo, Path]]]:
    """A root goes to DIR (default ./ROOT), each dataset to DIR/its/path."""
    base = Path(root if dest is None else dest)
    if base.exists() and not base.is_dir():
        raise BadRequest(f"{base} exists and is not a directory")
    resolved = base.resolve()
    inside: set[Path] = set()  # parents checked already (a root has few, and many files)
    out = []
    for info in infos:
        target = base.joinpath(*PurePosixPath(info.path).parts)
        # paths are validated relative names, but a symlink already in DIR could still
        # point elsewhere: check where the file would really land
        if target.parent not in inside:
            if not target.parent.resolve().is_relative_to(resolved):
                raise BadRequest(f"{target} would be written outside {base}")
            inside.add(target.parent)
        out.append((info, target))
    return base, out


def groups(
    targets: list[tuple[DatasetInfo, Path]],
) -> tuple[list[list[tuple[DatasetInfo, Path]]], list[tuple[DatasetInfo, Path]]]:
    """A root's datasets as groups of small ones (one request each) and big ones (alone)."""
    batches: list[list[tuple[DatasetInfo, Path]]] = []
    alone = []
    chunks = nbytes = 0
    for info, target in targets:
        if info.nchunks == 0 or info.nchunks > GROUP_CHUNKS // 2 or info.nbytes > GROUP_BYTES // 2:
            alone.append((info, target))
            continue
        if not batches or chunks + info.nchunks > GROUP_CHUNKS or nbytes + info.nbytes > GROUP_BYTES:
            batches.append([])
            chunks = nbytes = 0
        batches[-1].append((info, target))
        chunks += info.nchunks
        nbytes += info.nbytes
    return batches, alone


class Meter:
    """Sums progress over the datasets of one download; reports (done, total) bytes."""

    def __init__(self, total: int, report: Callable[[int, int], None] | None) -> None:
        self.total = total
        self.done = 0
        self._report = report
        self._lock = threading.Lock()  # a root's datasets download in parallel
        if report:
            report(0, total)

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
        self.part = target.with_name(target.name + ".part")
        self.meter = meter
        self._writer = None
        self.count = 0

    @property
    def nchunks(self) -> int:
        return self.info.nchunks

    def open(self) -> None:
        from caterva.protocol.layout import FileWriter  # blosc2: only when writing

        if not self.target.parent.is_dir():  # one stat: a root's files share few folders
            self.target.parent.mkdir(parents=True, exist_ok=True)
        self._writer = FileWriter(self.info, self.part)

    def add(self, index: int, digest: str, data: bytes) -> None:
        if index != self.count:
            raise ProtocolError(f"expected chunk {self.count}, the subscriber sent {index}")
        if index >= self.info.nchunks or digest != self.info.digests[index]:
            raise DigestMismatch(
                f"{self.info.path} changed during the download (chunk {index}): run it again"
            )
        self._writer.add(data)
        self.count += 1
        self.meter.advance(chunk_nbytes(self.info, index))

    def add_all(self, items: list[tuple[int, str, bytes]]) -> None:
        for item in items:
            self.add(*item)

    def finish(self) -> Path:
        if self.count != self.info.nchunks:
            raise ProtocolError(f"{self.info.path}: got {self.count} of {self.info.nchunks} chunks")
        self._close()
        os.replace(self.part, self.target)
        return self.target

    def abort(self) -> None:
        try:
            self._close()
        finally:
            self.part.unlink(missing_ok=True)

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

    def request(self) -> dict:
        return {"datasets": [{"path": info.path, "i": f"0-{info.nchunks - 1}"}
                             for info, _ in self.targets]}

    def open(self) -> None:
        pass  # each dataset's file is opened at its first chunk

    def add(self, index: int, digest: str, data: bytes) -> None:
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

    def add_all(self, items: list[tuple[int, str, bytes]]) -> None:
        for item in items:
            self.add(*item)

    def finish(self) -> None:
        if self._current is not None or self._next < len(self.targets):
            raise ProtocolError(f"the subscriber sent {self._next} of {len(self.targets)} datasets")

    def abort(self) -> None:
        if self._current is not None:
            self._current.abort()

