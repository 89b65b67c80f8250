"""Reading a selection out of compressed chunks: ``Gather`` decodes each touched chunk into
per-thread buffers and copies only its selected part, in any order and on several threads.

Needs blosc2, like caterva.protocol.layout; commands that read no array never import it.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable

import blosc2
import numpy as np

from caterva.errors import ProtocolError
from caterva.protocol.dtypes import dtype_from_json
from caterva.protocol.layout import new_container
from caterva.protocol.metadata import DatasetInfo
from caterva.protocol.selection import Key


def read_selection(info: DatasetInfo, key: Key, get_chunk: Callable[[int], bytes]) -> np.ndarray:
    """``original[key]`` for a normalized key, built only from the chunks it touches, one
    after the other (each decompressed with every core)."""
    from caterva.protocol.selection import touched_chunks

    gather = Gather(info, key, nthreads=os.cpu_count() or 1)
    for i in touched_chunks(key, info.chunks, info.chunk_grid):
        gather.add(i, get_chunk(i))
    return gather.result()


def read_parts(info: DatasetInfo, keys: list[Key], chunks: dict[int, bytes]) -> list[np.ndarray]:
    """``original[key]`` for each of ``keys`` (normalized, of a Blosc2 NDArray), from
    ``chunks`` (index -> compressed bytes, every chunk the keys touch). blosc2 decodes only
    the blocks each key reads: a few values at the corners of big chunks cost little, where
    Gather decodes whole chunks."""
    arr = new_container(info)
    for i, data in chunks.items():
        arr.schunk.update_chunk(i, data)
    return [np.asarray(arr[key]) for key in keys]


def _read_with_blosc2(info: DatasetInfo, key: Key, get_chunk: Callable[[int], bytes]) -> np.ndarray:
    """``read_selection`` by blosc2's own indexing, for what Gather does not decode itself."""
    from caterva.protocol.selection import touched_chunks

    needed = touched_chunks(key, info.chunks, info.chunk_grid)
    if info.kind == "b2nd":
        arr = new_container(info)
        for i in needed:
            arr.schunk.update_chunk(i, get_chunk(i))
        return np.asarray(arr[key])
    # 1-D bytes: decompress whole chunks and pick the selected bytes out of them
    (item,) = key
    cs = info.chunksize
    if isinstance(item, int):
        chunk = np.frombuffer(blosc2.decompress(get_chunk(item // cs)), np.uint8)
        return np.asarray(chunk[item % cs])
    stop = -1 if item.stop is None else item.stop
    idx = np.arange(item.start, stop, item.step, dtype=np.int64)
    out = np.empty(len(idx), np.uint8)
    owner = idx // cs
    for i in needed:
        chunk = np.frombuffer(blosc2.decompress(get_chunk(i)), np.uint8)
        mask = owner == i
        out[mask] = chunk[idx[mask] - i * cs]
    return out


class Gather:
    """``original[key]`` built as chunks come, in any order and on several threads at once:
    ``add`` each touched chunk, then take ``result()``. For a Blosc2 NDArray each chunk is
    decompressed into a buffer of the calling thread and only its selected part copied into
    the answer. (blosc2's own indexing allocates fresh buffers for every chunk; faulting their
    pages in costs about as much as decompressing.)

    ``nthreads``: blosc2's threads per chunk. By default the cores are shared among the
    chunks, for chunks added in parallel."""

    def __init__(self, info: DatasetInfo, key: Key, nthreads: int | None = None) -> None:
        # Gather decodes on worker threads (a client's chunks while the next ones arrive, a
        # subscriber's selections beside its event loop): let blosc2 drop the GIL meanwhile.
        # A process-wide blosc2 setting, so made by the first decoder, not at import; it costs
        # a little per call, next to nothing for chunks of kilobytes.
        blosc2.set_releasegil(True)
        self.info, self.key = info, key
        self._held: dict[int, bytes] = {}  # what blosc2 decodes, when it does
        self._plan: dict[int, tuple[tuple, tuple]] | None = None
        if info.kind != "b2nd" or not info.nchunks or not info.shape:
            return  # bytes, empty and 0-d: nothing to gain
        from caterva.protocol.selection import _range

        self._dtype = dtype = dtype_from_json(info.dtype)
        # a decompressed chunk is its blocks one after the other, each in C order, over the
        # chunk rounded up to whole blocks
        self._grid = grid = [-(-c // b) for c, b in zip(info.chunks, info.blocks)]
        self._padded = padded = [g * b for g, b in zip(grid, info.blocks)]
        if int(np.prod(padded)) * dtype.itemsize != info.chunksize:
            raise ProtocolError(
                f"{info.path}: chunks of {info.chunksize} bytes do not hold "
                f"{padded} x {dtype.itemsize} bytes"
            )
        # per axis: (chunk coordinate, where in the answer, what in the chunk) of each touched
        # chunk
        axes: list[list[tuple[int, slice | None, int | slice]]] = []
        for item, c in zip(key, info.chunks):
            if isinstance(item, int):
                axes.append([(item // c, None, item % c)])
                continue
            r, runs, j = _range(item), [], 0
            while j < len(r):
                at = r[j] // c
                first = r[j] - at * c
                # how many of the next selected indices fall in this chunk
                room = (c - 1 - first) // item.step if item.step > 0 else first // -item.step
                count = min(room + 1, len(r) - j)
                last = first + (count - 1) * item.step
                stop = last + (1 if item.step > 0 else -1)
                runs.append(
                    (at, slice(j, j + count), slice(first, stop if stop >= 0 else None, item.step))
                )
                j += count
            axes.append(runs)
        strides = [int(np.prod(info.chunk_grid[d + 1 :])) for d in range(len(grid))]
        self._plan = {
            sum(p[0] * s for p, s in zip(parts, strides)): (
                tuple(p[1] for p in parts if p[1] is not None),
                tuple(p[2] for p in parts),
            )
            for parts in itertools.product(*axes)
        }
        self._out = np.empty(tuple(len(_range(s)) for s in key if isinstance(s, slice)), dtype)
        # what a chunk selected whole is, when its bytes are already in C order (blocks of
        # whole rows, no padding): decompressed straight into the answer where that part of
        # the answer is one run of memory (a slab of rows), no copy
        plain = padded == list(info.chunks) and all(g == 1 for g in grid[1:])
        self._whole = tuple(slice(0, c, 1) for c in info.chunks) if plain else None
        # the cores shared among the chunks: one chunk alone uses them all
        self._nthreads = nthreads or max(1, (os.cpu_count() or 1) // max(1, len(self._plan)))
        self._local = threading.local()  # each thread's decompression buffers

    def add(self, index: int, data: bytes) -> None:
        if self._plan is None:
            self._held[index] = data
            return
        where, what = self._plan[index]
        place = self._out[where] if what == self._whole else None
        if place is not None and place.flags.c_contiguous:
            self._decompress(index, data, place)
            return
        raw, chunk, reorder = self._buffers()
        self._decompress(index, data, raw)
        if reorder is not None:
            np.copyto(reorder[1], reorder[0])
        self._out[where] = chunk[what]

    def _decompress(self, index: int, data: bytes, dst: np.ndarray) -> None:
        try:
            # blosc2 trusts a chunk's header: more bytes than dst holds would be written past it
            if blosc2.get_cbuffer_sizes(data)[:2] != (self.info.chunksize, len(data)):
                raise ValueError("sizes in its header")
            blosc2.decompress2(data, dst=dst, nthreads=self._nthreads)
        except (RuntimeError, ValueError) as exc:
            raise ProtocolError(
                f"chunk {index} of {self.info.path} is not a Blosc2 chunk of "
                f"{self.info.chunksize} bytes ({exc})"
            ) from exc

    def _buffers(self) -> tuple[np.ndarray, np.ndarray, tuple | None]:
        """This thread's (decompressed chunk, the same in C order, (blocks, C-order view))."""
        got = getattr(self._local, "buffers", None)
        if got is None:
            grid, blocks, n = self._grid, self.info.blocks, len(self._grid)
            raw = np.empty(self.info.chunksize, np.uint8)
            if all(g == 1 for g in grid[1:]):  # blocks are whole rows of the chunk: C order
                got = raw, raw.view(self._dtype).reshape(self._padded), None
            else:  # one more copy, into C order (block axes after their chunk axis)
                blocked = raw.view(self._dtype).reshape(*grid, *blocks)
                chunk = np.empty(self._padded, self._dtype)
                order = [a for d in range(n) for a in (d, n + d)]
                interleaved = chunk.reshape([s for d in range(n) for s in (grid[d], blocks[d])])
                got = raw, chunk, (blocked.transpose(order), interleaved)
            self._local.buffers = got
        return got

    def result(self) -> np.ndarray:
        if self._plan is None:
            return _read_with_blosc2(self.info, self.key, self._held.__getitem__)
        return self._out
