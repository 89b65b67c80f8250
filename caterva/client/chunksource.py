"""A Dataset as blosc2's proxy source (``blosc2.ProxyNDSource``, duck-typed: blosc2 is not
imported here): ``shape``, ``chunks``, ``blocks``, ``dtype`` and ``cparams`` it has already,
``get_chunk`` is here. So ``blosc2.Proxy(ds)`` is a blosc2 operand with a local sparse cache
(in memory, or in a file with ``urlpath=``) that fetches each chunk once, when a slice, a
lazy expression or a reduction first touches it:

    proxy = blosc2.Proxy(client.dataset("example/images/terrain.b2nd"))
    proxy[0:10]                     # fetches the chunks of rows 0-9, keeps them
    blosc2.sum(proxy * 2 + 1)       # the rest, once

A Blosc2 array dataset (``.b2nd``) only: a ``.b2frame`` or a plain file reads as bytes, but
its chunks are not those of a 1-D array.
"""

from __future__ import annotations

from caterva.client.program import Program
from caterva.errors import BadSelection, ChunkOutOfRange, DigestMismatch


class ChunkSource:
    """``get_chunk`` for Dataset (caterva.client.dataset): a chunk exactly as stored."""

    def get_chunk(self, nchunk: int) -> bytes:
        """Chunk ``nchunk`` (flat, C order over the chunk grid) as stored at the source, its
        digest checked: blosc2.decompress (or a Proxy) reads it."""
        return self._client._run(_chunk_reader(self, nchunk))


class AsyncChunkSource:
    """The same for AsyncDataset: ``await ds.get_chunk(n)``."""

    async def get_chunk(self, nchunk: int) -> bytes:
        return await self._client._run(_chunk_reader(self, nchunk))


def _chunk_reader(ds, nchunk: int) -> Program:
    if ds.field is not None or ds.kind != "b2nd":
        raise BadSelection(f"{ds.address}: only whole .b2nd arrays have array chunks")
    if not 0 <= nchunk < ds.info.nchunks:
        raise ChunkOutOfRange(f"{ds.address} has {ds.info.nchunks} chunks, not {nchunk}")
    got: dict[int, bytes] = {}
    if not (yield from ds._chunks([nchunk], got.__setitem__)):
        raise DigestMismatch(f"{ds.address} changed since it was opened: refresh() it")
    return got[nchunk]
