"""``python -m benchmarks.copyfloor``: what the kernel takes to copy a cube's chunks into a new
file, as the handoff does (one ``copy_file_range`` per cached chunk file, into a file reserved
first), against the same bytes copied from one file in one call, and from one file chunk by
chunk: how much of a warm local download a cache keeping a dataset in one file would save.

    --repeat N   samples of each way (the order flips every round)
    --scale S    cube size, 1 = 1 GiB (the benchmark's data, made once in --workdir)

The chunk files are the compressible cube's chunks, written once into a scratch directory of
--workdir (in the page cache, as a warm subscriber's are). Prints the medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import blosc2

from benchmarks import data, harness


def copy(target: Path, sources: list[tuple[Path, int, int]], size: int) -> float:
    """Seconds to copy each (file, offset, count) of ``sources``, in order, into ``target``
    (each file opened once, closed after its last piece)."""
    target.unlink(missing_ok=True)
    os.sync()  # untimed: the last sample's writeback
    start = time.perf_counter()
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.posix_fallocate(out, 0, size)
    at, fd, current = 0, -1, None
    for path, offset, count in sources:
        if path != current:
            if fd >= 0:
                os.close(fd)
            fd, current = os.open(path, os.O_RDONLY), path
        while count:
            n = os.copy_file_range(fd, out, count, offset, at)
            offset, at, count = offset + n, at + n, count - n
    os.close(fd)
    os.close(out)
    return time.perf_counter() - start


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
        files, pieces, at = [], [], 0
        for i, chunk in enumerate(chunks):
            path = scratch / f"{i}.chunk"
            path.write_bytes(chunk)
            files.append((path, 0, len(chunk)))
            pieces.append((whole, at, len(chunk)))
            at += len(chunk)
        ways = {
            "a file per chunk": files,
            "one file, a call per chunk": pieces,
            "one file, one call": [(whole, 0, at)],
        }
        samples: dict[str, list[float]] = {way: [] for way in ways}
        for r in range(args.repeat):
            for way in list(ways)[:: -1 if r % 2 else 1]:
                samples[way].append(copy(scratch / "out", ways[way], at))
        print(f"{len(chunks)} chunks, {at / 1e6:.1f} MB")
        for way, got in samples.items():
            print(f"{way:28} median {statistics.median(got) * 1000:.1f} ms")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
