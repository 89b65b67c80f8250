"""``python -m benchmarks.copyfloor``: what a warm local download's copy costs: a cube's chunk
files written into a new file (reserved first) as the handoff writes them
(caterva.subscriber.handoff: read into a buffer, two windows at once in worker threads),
against one ``copy_file_range`` per chunk file (the handoff's way before), and against the same
bytes copied from one file in one call (the floor: what a cache keeping a dataset in one file
could reach).

    --repeat N   samples of each way (the order flips every round)
    --scale S    cube size, 1 = 1 GiB (the benchmark's data, made once in --workdir)

The chunk files are the compressible cube's chunks, written once into a scratch directory of
--workdir (in the page cache, as a warm subscriber's are). Prints the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import blosc2

from benchmarks import data, harness
from caterva.service.ranges import FilePart
from caterva.subscriber import handoff


def timed(target: Path, size: int, write) -> float:
    """Seconds ``write(fd)`` takes to fill ``target``, reserved first, as a download's is."""
    target.unlink(missing_ok=True)
    os.sync()  # untimed: the last sample's writeback
    start = time.perf_counter()
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.posix_fallocate(out, 0, size)
    write(out)
    os.close(out)
    return time.perf_counter() - start


def copied(sources: list[tuple[Path, int]]):
    """Each (file, size) of ``sources`` copied by the kernel in turn, a call each."""

    def write(out: int) -> None:
        at = 0
        for path, count in sources:
            fd, offset = os.open(path, os.O_RDONLY), 0
            while offset < count:
                n = os.copy_file_range(fd, out, count - offset, offset, at)
                offset, at = offset + n, at + n
            os.close(fd)

    return write


class Cached:
    """What the handoff writes from: a file made of cached chunk files, in order."""

    filename = "cube"

    def __init__(self, files: list[tuple[Path, int]]) -> None:
        self.files, self.size = files, sum(count for _, count in files)

    async def read(self, start: int, stop: int) -> AsyncIterator[FilePart]:
        for path, count in self.files:
            yield FilePart(open(path, "rb", buffering=0), 0, count)  # noqa: SIM115 (closed by the write)


def handed_off(files: list[tuple[Path, int]], loop: asyncio.AbstractEventLoop):
    """The handoff's own write (``handoff._write``: windows, two under way, progress sent on
    a socket pair standing for the client's connection)."""

    def write(out: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with ours, theirs:
            ours.setblocking(False)
            loop.run_until_complete(handoff._write(Cached(files), out, ours))

    return write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--scale", type=float, default=1)
    harness.add_workdir(parser)
    args = parser.parse_args()
    layout = data.make(args.workdir, data.side_for(args.scale), 0)
    scratch = args.workdir / "copyfloor"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        schunk = blosc2.open(str(layout.big / "smooth.b2nd"), mode="r").schunk
        chunks = [schunk.get_chunk(i) for i in range(schunk.nchunks)]
        whole = scratch / "whole"
        whole.write_bytes(b"".join(chunks))
        files = []
        for i, chunk in enumerate(chunks):
            path = scratch / f"{i}.chunk"
            path.write_bytes(chunk)
            files.append((path, len(chunk)))
        size = sum(len(chunk) for chunk in chunks)
        loop = asyncio.new_event_loop()
        try:
            ways = {
                "handoff (buffered, 2 at once)": handed_off(files, loop),
                "copy_file_range a file": copied(files),
                "one file, one call": copied([(whole, size)]),
            }
            samples: dict[str, list[float]] = {way: [] for way in ways}
            for r in range(args.repeat):
                for way in list(ways)[:: -1 if r % 2 else 1]:
                    samples[way].append(timed(scratch / "out", size, ways[way]))
                    if (scratch / "out").read_bytes() != whole.read_bytes():
                        raise SystemExit(f"{way}: the copy differs from the chunks")
        finally:
            loop.close()
        print(f"{len(chunks)} chunks, {size / 1e6:.1f} MB")
        for way, got in samples.items():
            print(f"{way:30} median {statistics.median(got) * 1000:.1f} ms")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
