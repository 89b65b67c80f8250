"""Downloads without the network: where files go, which chunks each batch request asks for,
and the Assembler that turns chunks received in order into a verified file.

A download writes ``DEST.part`` and renames it to DEST only once every chunk arrived and
matched the digest the dataset's info promised, so DEST is never a half-written file and a
dataset that changed during the download is an error, not a silent mix of versions. What DEST
already is decides the rest (``Placement``): a symlink is followed (the file it points to is
replaced, the link stays), a FIFO or a device is written through, never replaced; an existing
file is replaced only when asked to (``overwrite``); a missing directory is an error.

The client checks the digest each frame carries, not the chunk bytes themselves: the
subscriber verified every chunk against that digest before caching it, and hashing again here
cost more than the rest of a download from a warm cache.
"""

from __future__ import annotations

import os
import queue
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from caterva.errors import BadRequest, DigestMismatch, ProtocolError, TargetExists
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


@dataclass(frozen=True)
class Placement:
    """How a download lands on its target: written to ``part``, then renamed onto ``final``
    (``through`` False), or copied through ``final`` (a FIFO, a device: renaming would
    replace it) from a ``part`` in the temporary directory."""

    part: Path
    final: Path
    through: bool

    @classmethod
    def of(cls, target: Path) -> Placement:
        """Raises BadRequest for a target that cannot be written."""
        try:
            mode = os.stat(target).st_mode  # follows symlinks
        except FileNotFoundError:
            if target.is_symlink():
                raise BadRequest(f"{target} is a symlink to nowhere: not replaced") from None
            if not target.parent.is_dir():
                raise BadRequest(f"cannot write {target}: no directory {target.parent}") from None
            return cls(_part_of(target), target, through=False)
        if stat.S_ISDIR(mode):
            raise BadRequest(f"{target} is a directory")
        if not stat.S_ISREG(mode):  # FIFO, device, socket: write into it
            fd, part = tempfile.mkstemp(prefix=f"caterva-{target.name}-", suffix=".part")
            os.close(fd)
            return cls(Path(part), target, through=True)
        final = Path(os.path.realpath(target))  # through a symlink: replace what it points to
        return cls(_part_of(final), final, through=False)

    def land(self) -> None:
        if self.through:
            with open(self.part, "rb") as src, open(self.final, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            self.part.unlink()
        else:
            os.replace(self.part, self.final)


def _part_of(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def refuse_existing(target: Path) -> None:
    """A download replaces a file already there only when asked to: an empty one (what a
    shell's ``>`` just made) holds nothing to lose."""
    if target.is_file() and target.stat().st_size:
        raise TargetExists(f"{target} exists already: not replaced", path=str(target))


def dataset_target(path: str, dest: str | os.PathLike | None, overwrite: bool = True) -> Path:
    """Like cp: no dest -> ./NAME; an existing directory -> DIR/NAME; else dest itself, whose
    directory must exist."""
    name = PurePosixPath(path).name
    target = Path(name) if dest is None else Path(dest)
    if target.is_dir():
        target = target / name
    if not target.parent.is_dir():
        raise BadRequest(f"cannot write {target}: no directory {target.parent}")
    if not overwrite:
        refuse_existing(target)
    return target


def root_targets(
    root: str, infos: list[DatasetInfo], dest: str | os.PathLike | None, overwrite: bool = True
) -> tuple[Path, list[tuple[DatasetInfo, Path]]]:
    """A root goes to DIR (default ./ROOT), each dataset to DIR/its/path. DIR's parent must
    exist; without ``overwrite`` a file already at a dataset's place is refused up front."""
    base = Path(root if dest is None else dest)
    if base.exists() and not base.is_dir():
        raise BadRequest(f"{base} exists and is not a directory")
    if not base.parent.is_dir():
        raise BadRequest(f"cannot write {base}: no directory {base.parent}")
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
        if not overwrite:
            refuse_existing(target)
        out.append((info, target))
    return base, out


@contextmanager
def made_dirs(base: Path, targets: list[tuple[DatasetInfo, Path]]) -> Iterator[None]:
    """Create ``base`` for a root download; if the download fails, remove the directories it
    created that are still empty (a failed download leaves nothing behind it made)."""
    dirs = {base} | {t.parent for _, t in targets}
    for d in list(dirs):
        dirs.update(p for p in d.parents if p.is_relative_to(base))
    new = sorted((d for d in dirs if not d.exists()), key=lambda d: len(d.parts), reverse=True)
    base.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for d in new:  # deepest first
            try:
                d.rmdir()
            except OSError:  # not empty (another file, a finished dataset) or gone
                pass
        raise


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


class Cancelled(Exception):
    """A download's other parts stop: one failed, or the user pressed Ctrl-C."""


class Meter:
    """Sums progress over the datasets of one download; reports (done, total) bytes.

    It is also how the parts of one download stop together: after ``cancel()`` every part
    fails at its next chunk (``check``), so a root download ends within a chunk of a Ctrl-C
    instead of finishing the requests in flight."""

    def __init__(self, total: int, report: Callable[[int, int], None] | None) -> None:
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

    def add(self, index: int, digest: str, data: bytes) -> None:
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

    def add_all(self, items: list[tuple[int, str, bytes]]) -> None:
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

