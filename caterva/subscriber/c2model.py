"""The Caterva2 API's shapes of things, for caterva.subscriber.c2compat (no I/O): a dataset's
metadata as ``api/info`` gives it, the ``indices`` key of ``api/fetch`` (numpy's integer-array
indexing, which blosc2 sends for lists, arrays and masks), the chunks a key touches, and the
answer as a Blosc2 frame.

Every dataset reads as an array, as everywhere in caterva: a ``.b2frame`` and a plain file as
1-D ``uint8`` arrays of their bytes. A plain file's metadata is a super-chunk's (no shape), as
Caterva2 describes one, so ``caterva2.Client`` takes it for a file rather than an array.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from caterva.errors import BadSelection
from caterva.protocol import selection
from caterva.protocol.dtypes import dtype_from_json
from caterva.protocol.metadata import DatasetInfo

MAX_POINTS = 1 << 20  # coordinates one ``indices`` key may select (after broadcasting)


def dtype_of(info: DatasetInfo) -> np.dtype:
    return dtype_from_json(info.dtype)


def metadata(info: DatasetInfo) -> dict[str, Any]:
    """``api/info``: what blosc2.C2Array and caterva2.Client read of a dataset."""
    dtype = dtype_of(info)
    mtime = datetime.fromtimestamp(info.mtime, UTC).isoformat()
    schunk = {
        "nbytes": info.nbytes,
        "cbytes": info.cbytes,
        "cratio": info.nbytes / info.cbytes if info.cbytes else 0.0,
        "chunkshape": info.chunksize // dtype.itemsize,
        "chunksize": info.chunksize,
        "blocksize": math.prod(info.blocks) * dtype.itemsize,
        "typesize": info.cparams.get("typesize", dtype.itemsize),
        "nchunks": info.nchunks,
        "contiguous": True,
        "urlpath": None,
        "cparams": dict(info.cparams),
        "vlmeta": info.vlmeta,  # JSON; bytes as {"__bytes__": base64}
        "mtime": mtime,
    }
    if info.kind == "file":
        return {**schunk, "size": info.size}
    return {
        "shape": info.shape,
        "chunks": info.chunks,
        "blocks": info.blocks,
        # as Caterva2 spells it: a name, or the repr of a structured dtype (blosc2 reads both)
        "dtype": str(dtype),
        "schunk": schunk,
        "mtime": mtime,
        "etag": info.etag,
        # api/fetch builds its answers: no byte ranges of a stored frame (c2compat)
        "accept_ranges": "none",
    }


# --- the indices key ----------------------------------------------------------------------------


def parse_indices(text: str, shape: list[int]) -> tuple:
    """``indices`` (JSON, one entry per axis: an int, ``"start:stop"``, null, or a nested list
    of coordinates) as a key of ints, resolved slices and int64 arrays of in-range
    coordinates; BadSelection when it is not one."""
    try:
        entries = json.loads(text)
    except (ValueError, RecursionError):
        raise BadSelection("indices is not JSON") from None
    if not isinstance(entries, list):
        raise BadSelection("indices is a JSON list, one entry per axis")
    if len(entries) > len(shape):
        raise BadSelection(f"indices has {len(entries)} entries for {len(shape)} axes")
    key: list[Any] = []
    for axis, (entry, size) in enumerate(zip(entries, shape)):
        if isinstance(entry, list):
            key.append(_coordinates(entry, axis, size))
        elif entry is None:
            key.append(slice(None))
        elif isinstance(entry, int) and not isinstance(entry, bool):
            key.append(entry)
        elif isinstance(entry, str):
            item = selection.parse(entry)
            if len(item) != 1 or not isinstance(item[0], slice):
                raise BadSelection(f"indices entry {entry[:40]!r} is not one slice")
            key.append(item[0])
        else:
            raise BadSelection(f"indices entry {axis} is neither an int, a slice nor a list")
    arrays = {i: k for i, k in enumerate(key) if isinstance(k, np.ndarray)}
    # the others as selection resolves them (bounds, negatives), the arrays in their places
    basic = selection.normalize(
        tuple(slice(None) if i in arrays else k for i, k in enumerate(key)), shape
    )
    return tuple(arrays.get(i, k) for i, k in enumerate(basic))


def _coordinates(entry: list, axis: int, size: int) -> np.ndarray:
    try:
        coords = np.asarray(entry)
    except ValueError:  # ragged
        raise BadSelection(f"the coordinates of axis {axis} are not a regular array") from None
    if coords.size == 0:
        return coords.astype(np.int64)
    if coords.dtype.kind not in "iu":
        raise BadSelection(f"the coordinates of axis {axis} are not integers")
    if coords.min() < -size or coords.max() >= size:
        raise BadSelection(f"a coordinate of axis {axis} is out of bounds (size {size})")
    return np.where(coords < 0, coords + size, coords).astype(np.int64)


def _arrays(key: tuple) -> list[int]:
    return [axis for axis, item in enumerate(key) if isinstance(item, np.ndarray)]


def result_size(key: tuple) -> int:
    """How many items ``key`` selects (checked before anything is read)."""
    points = 1
    if axes := _arrays(key):
        try:
            points = math.prod(np.broadcast_shapes(*(key[a].shape for a in axes)))
        except ValueError:
            raise BadSelection("the coordinate arrays do not broadcast together") from None
        if points > MAX_POINTS:
            raise BadSelection(f"more than {MAX_POINTS:,} coordinates: ask in batches")
    return points * math.prod(selection.result_shape(key))


def touched(key: tuple, info: DatasetInfo) -> list[int]:
    """The chunks (flat indices) holding an item ``key`` selects: no more."""
    axes = _arrays(key)
    plain = tuple(0 if a in axes else item for a, item in enumerate(key))
    base = selection.touched_chunks(plain, info.chunks, info.chunk_grid)
    if not axes or not base:
        return base
    grid = info.chunk_grid
    strides = [math.prod(grid[a + 1 :]) for a in range(len(grid))]
    points = np.broadcast_arrays(*(key[a] for a in axes))
    if points[0].size == 0:
        return []
    # each point's chunk, as its offset in the flat chunk index; the other axes add base
    offsets = sum((p.reshape(-1) // info.chunks[a]) * strides[a] for a, p in zip(axes, points))
    flat = np.unique(np.unique(offsets)[:, None] + np.asarray(base)[None, :])
    return flat.tolist()


# --- answers ------------------------------------------------------------------------------------


def frame(info: DatasetInfo, key: tuple, chunks: dict[int, bytes], field: str | None) -> bytes:
    """``original[key]`` (its ``field``, if named) as a Blosc2 NDArray frame, built from the
    touched ``chunks``."""
    import blosc2

    from caterva.protocol.gather import read_selection
    from caterva.protocol.layout import new_container

    if not _arrays(key):
        array = read_selection(info, key, chunks.__getitem__)
    elif info.kind == "b2nd":
        sparse = new_container(info)  # in memory; only the touched chunks are ever read
        for i, data in chunks.items():
            sparse.schunk.update_chunk(i, data)
        try:
            array = sparse[key]
        except NotImplementedError as exc:  # e.g. coordinate arrays on both sides of a slice
            raise BadSelection(f"blosc2 cannot index so: {exc}") from None
    else:
        array = _bytes_at(info, key[0], chunks)
    if field is not None:
        array = array[field]
    return blosc2.asarray(np.asarray(array, order="C")).to_cframe()


def _bytes_at(info: DatasetInfo, idx: np.ndarray, chunks: dict[int, bytes]) -> np.ndarray:
    """The bytes at ``idx`` of a dataset read as bytes (a .b2frame, a plain file)."""
    import blosc2

    size = info.chunksize
    out = np.empty(idx.shape, np.uint8)
    owner = idx // size
    for i, data in chunks.items():
        here = owner == i
        out[here] = np.frombuffer(blosc2.decompress(data), np.uint8)[idx[here] - i * size]
    return out
