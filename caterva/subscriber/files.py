"""The subscriber's ``GET .../file``: a dataset as one file, made as it is sent, never on disk.

A Blosc2 dataset is sent as the very frame a client download writes (layout.FileWriter):
header, the compressed chunks one after the other, then the chunk index and the trailer. The
header and the index hold the frame's size and every chunk's offset, so every chunk's size is
needed before the first byte: those the cache holds come from its index, the others are
fetched once (through the cache, which keeps what fits). Then the chunks the request covers are
sent a window at a time, fetched again if evicted meanwhile. So a file of any size takes no
space outside the cache budget; one bigger than the budget costs a second fetch of what did not
fit. Any byte is located before a chunk is read: a Range fetches only the chunks it covers.

A plain file is sent as its original bytes, each chunk decompressed as it goes: chunk n holds
bytes [n * chunksize, (n + 1) * chunksize), so a Range needs no sizes at all.

Every chunk is of the one version ``ds`` pinned (caterva.subscriber.read); if that version
is gone from every source midway, the response is cut (caterva.service.ranges.StreamedFile).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import os
from collections.abc import AsyncIterator

from caterva.errors import CatervaError, ProtocolError
from caterva.protocol import rest
from caterva.service.ranges import StreamedFile
from caterva.subscriber.cache import Cache
from caterva.subscriber.read import ReadPath
from caterva.subscriber.state import Dataset

WINDOW_BYTES = 8 << 20  # compressed bytes fetched, then sent, at a time


def windows(ds: Dataset, indices: list[int]) -> list[list[int]]:
    """``indices`` of ``ds`` cut into windows of about WINDOW_BYTES."""
    return [parts[0][1] for parts, _ in rest.pieces([(ds, indices)], WINDOW_BYTES)]


async def file_response(reader: ReadPath, cache: Cache, ds: Dataset) -> StreamedFile:
    """The file of ``ds``; what can fail before the first byte (no source) fails here."""
    name, etag = os.path.basename(ds.path), f'"{ds.info.etag}"'
    if ds.info.kind == "file":
        return StreamedFile(
            ds.info.size, lambda a, b: _plain(reader, ds, a, b), etag=etag, filename=name
        )
    from caterva.protocol.layout import frame_bounds

    sizes = await chunk_sizes(reader, cache, ds)
    bounds = frame_bounds(ds.info, sizes)
    if bounds is None:
        raise CatervaError(
            f"this blosc2 frames {ds.path}'s layout in a way caterva does not "
            "know: download it with the caterva client"
        )
    head, tail = bounds
    offsets = list(itertools.accumulate(sizes, initial=len(head)))  # offsets[-1]: the tail's

    async def read(start: int, stop: int) -> AsyncIterator[bytes]:
        first = max(bisect.bisect_right(offsets, start) - 1, 0)
        last = bisect.bisect_left(offsets, stop) - 1  # the chunk holding byte stop - 1
        parts = windows(ds, list(range(first, min(last + 1, len(sizes)))))
        got = await reader.chunks(ds, parts[0]) if parts else {}  # fails before any byte
        if start < len(head):
            yield head[start:stop]
        ahead: asyncio.Future | None = None  # the next window, read while this one is sent
        try:
            for k, part in enumerate(parts):
                got = got if k == 0 else await ahead
                if k + 1 < len(parts):
                    ahead = asyncio.ensure_future(reader.chunks(ds, parts[k + 1]))
                for n in part:
                    data = got.pop(n)
                    if len(data) != sizes[n]:  # same digest, other size: cannot be, but if so
                        raise ProtocolError(f"chunk {n} of {ds.path} changed size")
                    yield data[max(start - offsets[n], 0) : stop - offsets[n]]
        finally:
            if ahead is not None and not ahead.done():  # the reader went away
                ahead.cancel()
        if stop > offsets[-1]:
            yield tail[max(start - offsets[-1], 0) : stop - offsets[-1]]

    return StreamedFile(offsets[-1] + len(tail), read, etag=etag, filename=name)


async def chunk_sizes(reader: ReadPath, cache: Cache, ds: Dataset) -> list[int]:
    """Every chunk's compressed size: from the cache's index for the chunks it holds of this
    version, else fetched (through the cache)."""
    digests = ds.info.digests
    sizes = {
        i: size
        for i, (digest, size) in cache.state.present(ds.id).items()
        if i < len(digests) and digest == digests[i]
    }
    for part in windows(ds, [i for i in range(ds.info.nchunks) if i not in sizes]):
        got = await reader.chunks(ds, part)
        sizes.update((i, len(got[i])) for i in part)
    return [sizes[i] for i in range(ds.info.nchunks)]


async def _plain(reader: ReadPath, ds: Dataset, start: int, stop: int) -> AsyncIterator[bytes]:
    """Bytes [start, stop) of a plain file: its chunks decompressed."""
    import blosc2

    size = ds.info.chunksize
    for part in windows(ds, list(range(start // size, -(-stop // size)))):
        got = await reader.chunks(ds, part)
        for n in part:
            data = await asyncio.to_thread(blosc2.decompress, got.pop(n))
            yield data[max(start - n * size, 0) : stop - n * size]
