"""Downloads planned once, with no I/O of their own: programs (client/program.py) that ask for
a dataset's info or a root's manifest, choose where each file goes (client/placement.py),
cut the chunks into batch requests, and feed what arrives to Assemblers (client/transfer.py).
``Client`` and ``AsyncClient`` run them (file work happens in the programs: the async client
resumes them in a worker thread).

A download that raced a change (a digest that is not the one its info promised) runs once
more from the top: what is there now was checked, or written by the first try.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from caterva.client import handoff
from caterva.client.calls import Cached, Call, Calls, Frame
from caterva.client.framefile import FrameFile
from caterva.client.placement import Placement, dataset_target, made_dirs, root_targets
from caterva.client.program import Parallel, Program
from caterva.client.transfer import Assembler, Batch, Behind, Meter, Progress
from caterva.errors import DatasetChanged, DigestMismatch, NotSupported
from caterva.protocol import rest
from caterva.protocol.metadata import DatasetInfo
from caterva.protocol.names import split_address

# Chunks asked for in one batch request: about this many uncompressed bytes per request. The
# chunks stream one at a time, so this bounds request count, not memory; each request waits
# for its first chunk, so fewer is faster.
WINDOW_BYTES = 512 * 2**20
# Requests of a root download in flight at once: waiting on one at a time leaves both this
# process and the subscriber idle half the time.
ROOT_PARALLEL = 4
# Small datasets of a root share a request (the multi-dataset batch), up to this
# many chunks and uncompressed bytes each; a dataset as big goes alone, in windows.
GROUP_CHUNKS = 256
GROUP_BYTES = 64 << 20

Targets = list[tuple[DatasetInfo, Path]]
Dest = str | os.PathLike | None  # see Client.download


def download(address: str, dest: Dest, progress: Progress | None, overwrite: bool) -> Program:
    """``Client.download``: returns (the file or directory written, the datasets it holds)."""
    root, path = split_address(address)
    try:
        return (yield from _download(root, path, dest, progress, overwrite))
    except (DatasetChanged, DigestMismatch):  # raced a change: once more, from the top
        return (yield from _download(root, path, dest, progress, True))


def _download(
    root: str, path: str | None, dest: Dest, progress: Progress | None, overwrite: bool
) -> Program:
    if path is None:
        return (yield from _root(root, dest, progress, overwrite))
    info, cached = yield Calls.info(root, path)
    return (yield from dataset(root, info, dest, progress, overwrite, cached)), [info]


def dataset(
    root: str,
    info: DatasetInfo,
    dest: Dest,
    progress: Progress | None,
    overwrite: bool = True,
    cached: Cached | None = None,
) -> Program:
    """One dataset whose info is known into ``dest``; returns the file written.

    A Blosc2 dataset the subscriber holds whole (``cached``) comes as its stored file
    (client/framefile.py): it streams to disk with no framing here, nor blosc2. Otherwise
    its chunks come as they are fetched, framed here; so too when the subscriber cannot
    frame the dataset itself (NotSupported, before the first byte)."""
    target = dataset_target(info.path, dest, overwrite)
    meter = Meter(info.nbytes, progress)
    if info.kind != "file" and cached is not None and cached.chunks == info.nchunks:
        try:
            return (yield from fill_file(root, info, target, meter))
        except NotSupported:  # the subscriber cannot frame it: the chunk path does
            pass
    return (yield from fill(root, Assembler(info, target, meter)))


def fill_file(root: str, info: DatasetInfo, target: Path, meter: Meter) -> Program:
    """``info``'s stored file into ``target``: written by a subscriber on this machine
    (client/handoff.py), else from its ``/file``, verified as it arrives: hashed in one
    thread and written in another while the next bytes travel."""
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        ticket = yield Calls.handoff(root, info)
    except NotSupported:  # none for us (this subscriber has no socket): /file
        ticket = None
    if ticket is not None and (done := handoff.receive(ticket, info, target, meter)) is not None:
        return done
    sink = FrameFile(info, Placement.of(target), meter)
    workers = [Behind(sink.verify, depth=4), Behind(sink.store, depth=4)]

    def pour(pieces: list[bytes]) -> None:
        pieces = sink.take(pieces)
        for worker in workers:
            worker(pieces)

    try:
        yield Calls.file(root, info, sink.begin, pour)
        for worker in workers:
            worker.close()
        return sink.finish()
    except BaseException:
        for worker in workers:
            worker.stop()
        sink.abort()
        raise


def _root(root: str, dest: Dest, progress: Progress | None, overwrite: bool) -> Program:
    infos = yield Calls.manifest(root)
    base, targets = root_targets(root, infos, dest, overwrite)
    with made_dirs(base, targets):
        meter = Meter(sum(info.nbytes for info, _ in targets), progress)
        batches, alone = groups(targets)
        sinks = [Batch(batch, meter) for batch in batches] + [
            Assembler(info, target, meter) for info, target in alone
        ]
        yield Parallel([fill(root, sink) for sink in sinks], ROOT_PARALLEL, meter.cancel)
    return base, infos


def fill(root: str, sink: Assembler | Batch) -> Program:
    """Every chunk of ``sink``'s datasets, requested and written; returns what it finished."""
    sink.open()
    # chunks are written in a thread while the next ones arrive (not worth it for one)
    writer = Behind(sink.add_all) if sink.nchunks > 1 else None
    try:
        yield from requests(root, sink, writer or sink.add_all)
        if writer is not None:
            writer.close()
        return sink.finish()
    except BaseException:
        if writer is not None:
            writer.stop()
        sink.abort()
        raise


def requests(
    root: str, sink: Assembler | Batch, write: Callable[[list[Frame]], None]
) -> list[Call]:
    """The batch requests that fill ``sink``: one for a Batch of datasets, one per window
    for a dataset."""
    if isinstance(sink, Batch):
        return [Calls.chunks_of_many(root, [info for info, _ in sink.targets], write)]
    return [Calls.chunks(root, sink.info, window, write=write) for window in windows(sink.info)]


def windows(info: DatasetInfo) -> list[list[int]]:
    per = max(1, min(rest.MAX_BATCH, WINDOW_BYTES // max(info.chunksize, 1)))
    return [list(range(s, min(s + per, info.nchunks))) for s in range(0, info.nchunks, per)]


def groups(targets: Targets) -> tuple[list[Targets], Targets]:
    """A root's datasets as groups of small ones (one request each) and big ones (alone)."""
    batches: list[Targets] = []
    alone = []
    chunks = nbytes = 0
    for info, target in targets:
        if not 0 < info.nchunks <= GROUP_CHUNKS // 2 or info.nbytes > GROUP_BYTES // 2:
            alone.append((info, target))
            continue
        full = chunks + info.nchunks > GROUP_CHUNKS or nbytes + info.nbytes > GROUP_BYTES
        if not batches or full:
            batches.append([])
            chunks = nbytes = 0
        batches[-1].append((info, target))
        chunks += info.nchunks
        nbytes += info.nbytes
    return batches, alone
