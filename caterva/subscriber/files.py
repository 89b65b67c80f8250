"""The subscriber's ``GET .../file``: a dataset as one file, made as it is sent, never on disk.

A Blosc2 dataset is sent as the very frame a client download writes (layout.FileWriter):
header, the compressed chunks one after the other, then the chunk index and the trailer. The
header and the index hold the frame's size and every chunk's offset, so every chunk's size is
needed before the first byte: those the cache holds come from its index, the others are
fetched once (through the cache, which keeps what fits). Then the chunks the request covers are
sent a window at a time, fetched again if evicted meanwhile. So a file of any size takes no
space outside the cache budget; one bigger than the budget costs a second fetch of what did not
fit. Any byte is located before a chunk is read: a Range fetches only the chunks it covers.
Cached chunks go as their open files (caterva.service.ranges.FilePart): the kernel copies them
to the socket (sendfile, caterva.service.zerocopy), one call per chunk, and the next window is
opened (or fetched) while one is sent.

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
from typing import BinaryIO

from caterva.errors import NotSupported, ProtocolError
from caterva.protocol import rest
from caterva.service.ranges import FilePart, StreamedFile
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
    from caterva.protocol.layout import HEADER_ONLY, frame_bounds

    sizes = await chunk_sizes(reader, cache, ds)
    if HEADER_ONLY in sizes:  # blosc2 wants it in the index, not the body: not sent so here
        raise NotSupported(
            f"{ds.path} has chunks of zeros or NaNs stored as their header alone, which "
            "this route does not frame: download it with the caterva client"
        )
    bounds = frame_bounds(ds.info, sizes)
    if bounds is None:
        raise NotSupported(
            f"this blosc2 frames {ds.path}'s layout in a way caterva does not "
            "know: download it with the caterva client"
        )
    head, tail = bounds
    offsets = list(itertools.accumulate(sizes, initial=len(head)))  # offsets[-1]: the tail's

    async def window(part: list[int]) -> dict[int, bytes | BinaryIO]:
        """A window's chunks: those cached as open files (sent zero-copy), the rest read
        through the cache (fetched)."""
        files = cache.open_held(ds, part)
        cache.hit([(ds, files)])
        try:
            missing = [n for n in part if n not in files]
            return {**files, **(await reader.chunks(ds, missing) if missing else {})}
        except BaseException:
            _close(files)
            raise

    async def read(start: int, stop: int) -> AsyncIterator[bytes | FilePart]:
        first = max(bisect.bisect_right(offsets, start) - 1, 0)
        last = bisect.bisect_left(offsets, stop) - 1  # the chunk holding byte stop - 1
        parts = windows(ds, list(range(first, min(last + 1, len(sizes)))))
        got = await window(parts[0]) if parts else {}  # fails before any byte
        ahead: asyncio.Future | None = None  # the next window, read while this one is sent
        try:
            if start < len(head):
                yield head[start:stop]
            for k, part in enumerate(parts):
                got = got if k == 0 else await ahead
                if k + 1 < len(parts):
                    ahead = asyncio.ensure_future(window(parts[k + 1]))
                for n in part:
                    piece = got.pop(n)
                    lo, hi = max(start - offsets[n], 0), min(stop, offsets[n + 1]) - offsets[n]
                    size = len(piece) if isinstance(piece, bytes) else os.fstat(piece.fileno())[6]
                    if size != sizes[n]:  # same digest, other size: cannot be, but if so
                        _close({n: piece})
                        raise ProtocolError(f"chunk {n} of {ds.path} changed size")
                    yield piece[lo:hi] if isinstance(piece, bytes) else FilePart(piece, lo, hi - lo)
            if stop > offsets[-1]:
                yield tail[max(start - offsets[-1], 0) : stop - offsets[-1]]
        finally:  # the reader went away, or failed: what was opened and not sent is closed
            _close(got)
            if ahead is not None:
                ahead.cancel()  # a window still being read closes its own files
                if ahead.done() and not ahead.cancelled() and ahead.exception() is None:
                    _close(ahead.result())

    return StreamedFile(offsets[-1] + len(tail), read, etag=etag, filename=name)


def _close(pieces: dict[int, bytes | BinaryIO]) -> None:
    for piece in pieces.values():
        if not isinstance(piece, bytes):
            piece.close()


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
