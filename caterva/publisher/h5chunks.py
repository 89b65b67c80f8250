"""One HDF5 dataset seen as a Blosc2 NDArray: its layout, and each of its chunks as the bytes
caterva serves (h5py objects in, Blosc2 chunks out; hdf5.py wires this into the catalog).

Chunk ``i`` is the i-th of the C-order chunk grid, as for a ``.b2nd``. Where it comes from:

- chunked, Blosc2-filtered (hdf5plugin, filter 32026) and stored: the HDF5 chunk is a Blosc2
  frame (a one-chunk b2nd cframe) and the Blosc2 chunk inside it is sent unchanged, byte for
  byte; only the frame around it (~170 bytes of header, index and trailer) is dropped,
  because caterva's unit is a Blosc2 chunk, not a frame (passthrough: no recompression);
- chunked otherwise (gzip, lzf, shuffle, none), or a Blosc2 chunk whose frame does not fit
  the dataset's layout: HDF5 decodes that chunk's region and it is compressed here;
- not stored (sparse): the fill value, compressed once per layout;
- contiguous or compact: cut into chunks of at most the chunk budget, each read as a
  hyperslab, never the whole dataset.

Where HDF5 keeps a chunk comes from its chunk index (``get_chunk_info_by_coord``), never from
an assumed storage order. Compression runs on one thread with fixed parameters, so a chunk
compressed again gives the same bytes (several threads place blocks in finishing order).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import blosc2
import numpy as np

from caterva.protocol.dtypes import dtype_to_json
from caterva.protocol.layout import cparams_from_json, cparams_to_json

BLOSC2_FILTER = 32026  # hdf5plugin's (and PyTables') registered id of the Blosc2 filter
MAX_DIMS = 8  # blosc2's b2nd limit (B2ND_MAX_DIM)
BLOCK_BYTES = 64 << 10  # blocks of recompressed chunks: a few per L2 cache
ATTR_BYTES = 16 << 10  # an attribute larger than this (as JSON) is left out of vlmeta
COMPACT, CONTIGUOUS, CHUNKED = 0, 1, 2  # HDF5 layouts (h5py.h5d), here to import h5py lazily
# the publisher's Blosc2 settings for chunks it compresses (typesize follows the dtype)
CODEC, CLEVEL, FILTER = blosc2.Codec.ZSTD, 5, blosc2.Filter.SHUFFLE


def unrepresentable(ds: Any) -> str | None:
    """Why ``ds`` cannot be served as an array, or None when it can."""
    layout = ds.id.get_create_plist().get_layout()
    if layout not in (COMPACT, CONTIGUOUS, CHUNKED):
        return "virtual dataset (its data lives in other files)"
    if ds.id.get_create_plist().get_external_count():
        return "external storage (its data lives in other files)"
    if ds.ndim > MAX_DIMS:
        return f"{ds.ndim} dimensions (Blosc2 arrays have at most {MAX_DIMS})"
    return _dtype_problem(ds.dtype)


def _dtype_problem(dt: np.dtype) -> str | None:
    if dt.hasobject:
        return "variable-length or reference type"
    if dt.subdtype is not None:
        return _dtype_problem(dt.subdtype[0])
    if dt.names is not None:
        return next(filter(None, (_dtype_problem(dt.fields[n][0]) for n in dt.names)), None)
    if dt.kind not in "biufcS":
        return f"type {dt.str!r} (opaque or unsupported)"
    return None


def fit(
    shape: tuple[int, ...], itemsize: int, budget: int, divide: bool = False
) -> tuple[int, ...]:
    """The largest sub-shape of ``shape`` of at most ``budget`` bytes that keeps trailing
    dimensions whole where it can (so a hyperslab read is a few long runs); with ``divide``,
    each length divides the one in ``shape`` (blocks that tile a chunk: b2nd pads a chunk
    to a whole number of blocks)."""
    out = [max(1, n) for n in shape]
    for axis in range(len(out)):
        rest = itemsize * math.prod(out[axis + 1 :])
        if out[axis] * rest <= budget:
            break
        most = max(1, budget // rest)
        out[axis] = max(d for d in range(1, most + 1) if out[axis] % d == 0) if divide else most
    return tuple(out)


@dataclass
class Layout:
    """How a dataset is cut and compressed; the same from its description and at a read."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    blocks: tuple[int, ...]
    dtype: np.dtype
    cparams: dict[str, Any]  # JSON, as DatasetInfo holds it
    chunked: bool  # HDF5 chunks are caterva's chunks
    passthrough: bool  # HDF5 chunks are Blosc2 frames
    fill: Any
    _fill_chunk: bytes | None = field(default=None, repr=False)

    @classmethod
    def of(cls, ds: Any, budget: int) -> Layout:
        """A new description of ``ds``; contiguous data in chunks of at most ``budget``."""
        chunked, passthrough = _storage(ds)
        dt = ds.dtype
        chunks = tuple(ds.chunks) if chunked else fit(ds.shape, dt.itemsize, budget)
        blocks = fit(chunks, dt.itemsize, BLOCK_BYTES, divide=True)
        cparams = cparams_to_json(
            blosc2.CParams(
                codec=CODEC, clevel=CLEVEL, typesize=dt.itemsize, filters=[FILTER], filters_meta=[0]
            )
        )
        frame = _first_frame(ds) if passthrough else None
        if frame is not None:  # the layout the Blosc2 filter chose, so its chunks fit as they are
            blocks, cparams = tuple(frame.blocks), cparams_to_json(frame.schunk.cparams)
        return cls(ds.shape, chunks, blocks, dt, cparams, chunked, passthrough, ds.fillvalue)

    @classmethod
    def again(cls, ds: Any, chunks: list[int], blocks: list[int], cparams: dict) -> Layout:
        """The layout ``ds`` was described with (chunks, blocks, cparams from its info)."""
        chunked, passthrough = _storage(ds)
        shape, dt = ds.shape, ds.dtype
        return cls(
            shape, tuple(chunks), tuple(blocks), dt, cparams, chunked, passthrough, ds.fillvalue
        )

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks))

    @property
    def nchunks(self) -> int:
        return math.prod(self.grid)

    @property
    def chunksize(self) -> int:
        """Bytes of a chunk as b2nd holds it: padded to whole blocks."""
        padded = (-(-c // b) * b for c, b in zip(self.chunks, self.blocks))
        return self.dtype.itemsize * math.prod(padded)

    @property
    def dtype_json(self) -> Any:
        return dtype_to_json(self.dtype)

    def chunk(self, ds: Any, index: int) -> tuple[bytes, bool]:
        """Chunk ``index`` as served, and whether it was compressed here (so worth caching)."""
        start = tuple(i * c for i, c in zip(np.unravel_index(index, self.grid), self.chunks))
        if self.chunked:
            stored = ds.id.get_chunk_info_by_coord(start)
            if stored.byte_offset is None:  # never written: reads as the fill value
                return self.fill_chunk(), True
            if self.passthrough:
                mask, raw = ds.id.read_direct_chunk(start)
                inner = self.unwrap(raw) if mask == 0 else None
                if inner is not None:
                    return inner, False
        region = tuple(slice(a, min(a + c, s)) for a, c, s in zip(start, self.chunks, self.shape))
        return self.compress(ds[region] if region else ds[()]), True

    def unwrap(self, raw: bytes) -> bytes | None:
        """The Blosc2 chunk inside a stored frame, if the frame is one chunk of this layout."""
        frame = _frame(raw)
        if (
            frame is None
            or frame.schunk.nchunks != 1
            or tuple(frame.shape) != self.chunks
            or tuple(frame.blocks) != self.blocks
            or frame.schunk.typesize != self.dtype.itemsize
        ):
            return None
        return frame.schunk.get_chunk(0)

    def fill_chunk(self) -> bytes:
        if self._fill_chunk is None:
            self._fill_chunk = self.compress(np.full(self.chunks, self.fill, dtype=self.dtype))
        return self._fill_chunk

    def compress(self, data: np.ndarray) -> bytes:
        """``data`` (a chunk's region, short at the edges) as one Blosc2 chunk of this layout;
        the part beyond the edges holds the fill value."""
        data = np.asarray(data, dtype=self.dtype)
        if data.shape != self.chunks:
            full = np.full(self.chunks, self.fill, dtype=self.dtype)
            full[tuple(slice(0, n) for n in data.shape)] = data
            data = full
        cparams = cparams_from_json(self.cparams)
        cparams.nthreads = 1  # the same bytes every time (see the module docstring)
        array = blosc2.asarray(data, chunks=self.chunks, blocks=self.blocks, cparams=cparams)
        return array.schunk.get_chunk(0)


def _storage(ds: Any) -> tuple[bool, bool]:
    """Whether ``ds`` is chunked, and whether its chunks are Blosc2 frames (its only filter)."""
    plist = ds.id.get_create_plist()
    chunked = plist.get_layout() == CHUNKED
    filters = [plist.get_filter(k)[0] for k in range(plist.get_nfilters())] if chunked else []
    return chunked, filters == [BLOSC2_FILTER]


def _frame(raw: bytes) -> Any:
    try:
        return blosc2.ndarray_from_cframe(raw)
    except (RuntimeError, ValueError, TypeError):
        return None


def _first_frame(ds: Any) -> Any:
    """The frame of the first stored chunk (in file order), or None if none is stored."""
    if not ds.id.get_num_chunks():
        return None
    first = ds.id.get_chunk_info(0)
    mask, raw = ds.id.read_direct_chunk(first.chunk_offset)
    return _frame(raw) if mask == 0 else None


def attributes(obj: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """An HDF5 object's attributes as JSON values (for vlmeta), and those left out, with why.
    An object reference (NetCDF-4's DIMENSION_LIST, say) becomes the name it points to."""
    out: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in obj.attrs:
        try:
            value = _json(obj.attrs[name], lambda ref: obj.file[ref].name)
        except (OSError, TypeError, ValueError) as exc:
            skipped[name] = f"not representable as JSON ({exc})"
            continue
        if len(repr(value)) > ATTR_BYTES:
            skipped[name] = f"larger than {ATTR_BYTES} bytes"
            continue
        out[name] = value
    return out, skipped


def _json(value: Any, name_of: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject or value.dtype.names is not None:
            items = value.tolist() if value.ndim else value[()]
            return _json(items, name_of)
        return _json(value.tolist(), name_of)
    if isinstance(value, np.generic):
        return _json(value.item(), name_of)
    if isinstance(value, (list, tuple)):
        return [_json(v, name_of) for v in value]
    if type(value).__name__ == "Reference":  # h5py's, imported only where h5py is
        return name_of(value)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, complex):
        return [value.real, value.imag]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(type(value).__name__)
