"""The subscriber's selections: numpy-style selections of a dataset as .npy
(``/data``), or as numpy prints them (``/printed``, what `caterva show` shows), read from the
chunks they touch through the cache."""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query, Response

from caterva.errors import BadSelection, NotSupported
from caterva.protocol import printing, rest, selection
from caterva.service.http import BYTES, responses
from caterva.subscriber.deps import FollowerDep, ReadDep, Root
from caterva.subscriber.npy import NPY, NpyResponse

if TYPE_CHECKING:
    import numpy as np

    from caterva.subscriber.follower import Follower
    from caterva.subscriber.read import ReadPath
    from caterva.subscriber.state import Dataset

router = APIRouter(prefix=rest.API)

SEL = Query(description="e.g. `0:10, ::2, -1` or `...`", max_length=rest.SEL_MAX)
FIELD = Query(description="a field of a structured dtype", max_length=rest.FIELD_MAX)


@router.get(
    "/roots/{root}/data/{path:path}",
    summary="A numpy-style selection, as an .npy array",
    response_class=Response,
    responses={
        200: {
            "content": {NPY: BYTES["application/octet-stream"]},
            "description": "The selected values (NumPy .npy).",
        },
        **responses(400, 404, 409, 502, 503),
    },
)
async def data(
    root: Root,
    path: str,
    follower: FollowerDep,
    read: ReadDep,
    sel: Annotated[str, SEL] = "...",
    field: Annotated[str | None, FIELD] = None,
) -> Response:
    ds, key, _ = _selection(follower, root, path, sel, field)
    return NpyResponse(await _read(read, ds, key, field))


@router.get(
    "/roots/{root}/printed/{path:path}",
    summary="A numpy-style selection as numpy prints it (summarised when large)",
    description="What `caterva show` prints: the selection's dtype (as in dataset info) and "
    "shape, and numpy's text of it for lines of `width` characters (at least "
    f"{printing.MIN_WIDTH}); of more than {printing.THRESHOLD} values, only the first and last "
    f"{printing.EDGEITEMS} of each axis. 501 `not_supported` when that is more than "
    f"{printing.MAX_VALUES:,} values or {printing.MAX_BYTES:,} bytes of them: read the "
    "selection and print it yourself.",
    responses=responses(400, 404, 409, 501, 502, 503),
)
async def printed(
    root: Root,
    path: str,
    follower: FollowerDep,
    read: ReadDep,
    width: Annotated[int, Query(ge=1, le=printing.MAX_WIDTH)],
    sel: Annotated[str, SEL] = "...",
    field: Annotated[str | None, FIELD] = None,
) -> dict:
    import numpy as np

    from caterva.protocol.dtypes import dtype_to_json

    ds, key, dtype = _selection(follower, root, path, sel, field)
    shape = selection.result_shape(key)
    if not printing.fits(shape, dtype.base.itemsize):  # before any chunk is read
        raise NotSupported(
            f"{root}/{path}[{sel}] prints {printing.printed_values(shape):,} values of "
            f"{dtype.base.itemsize:,} bytes, more than a subscriber prints (at most "
            f"{printing.MAX_VALUES:,}, and {printing.MAX_BYTES:,} bytes): read the selection "
            "and print it"
        )
    array = await _read_printed(read, ds, key, field, dtype.base)
    if selection.is_scalar(selection.parse(sel), key):  # a scalar's own dtype: U6, not U16
        array = np.asarray(array[()])
    text = await asyncio.to_thread(printing.text, array, width)
    return {"dtype": dtype_to_json(array.dtype), "shape": list(array.shape), "text": text}


def _selection(
    follower: Follower, root: str, path: str, sel: str, field: str | None
) -> tuple[Dataset, selection.Key, np.dtype]:
    """The dataset, the normalized key (``sel`` may index a sub-array field's axes too) and
    the dtype (the field's, when given) of ``root/path[sel]``; BadSelection when it is more
    than a subscriber decodes into one answer."""
    from caterva.protocol.dtypes import dtype_from_json

    ds = follower.dataset(root, path)
    dtype = dtype_from_json(ds.info.dtype)
    if field is not None:
        if field not in (dtype.names or ()):
            raise BadSelection(f"{root}/{path} has no field {field!r}")
        dtype = dtype.fields[field][0]
    key = selection.normalize(selection.parse(sel), (*ds.info.shape, *dtype.shape))
    # the answer is decoded here, in memory: bounded, whatever the dataset's size
    nbytes = math.prod(selection.result_shape(key[: len(ds.info.shape)])) * dtype.itemsize
    if nbytes > rest.NPY_MAX:
        raise BadSelection(
            f"{root}/{path}[{sel}] is {nbytes:,} bytes, more than the {rest.NPY_MAX:,} a "
            "subscriber decodes into one answer: select less, read it as chunks (the Python "
            "client's default) or download the dataset"
        )
    return ds, key, dtype


async def _read_printed(
    read: ReadPath, ds: Dataset, key: selection.Key, field: str | None, dtype: np.dtype
) -> np.ndarray:
    """``_read``'s answer as far as numpy prints it: of a summarised selection, only the
    values printed (the ends of each axis) are fetched and decoded, the rest is zeros that
    numpy never reads (the corners of 1/64 of a 1 GiB cube: ~1 ms, against ~5 for all of its
    8 chunks)."""
    from caterva.protocol.gather import read_parts

    shape = selection.result_shape(key)
    ranges = printing.edges(shape)
    if ranges is None or ds.info.kind != "b2nd":  # all of it, or bytes (not an NDArray)
        return await _read(read, ds, key, field)
    ndim = len(ds.info.shape)
    remote, local = key[:ndim], key[ndim:]
    # the corners: each a product of one range per axis of the remote result (the axes of a
    # sub-array field are within each value, read whole)
    corners = list(itertools.product(*ranges[: len(selection.result_shape(remote))]))
    keys = [selection.part(remote, corner) for corner in corners]
    grid = ds.info.chunks, ds.info.chunk_grid
    needed = sorted({i for k in keys for i in selection.touched_chunks(k, *grid)})
    chunks = await read.chunks(ds, needed)  # in memory now: eviction cannot touch them
    parts = await asyncio.to_thread(read_parts, ds.info, keys, chunks)
    out = _zeros(shape, dtype)
    for corner, value in zip(corners, parts):
        if field is not None:
            value = value[field]
        out[tuple(slice(a, b) for a, b in corner)] = value[(Ellipsis, *local)] if local else value
    return out


def _zeros(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Zeros in pages of their own from the kernel: only the pages written cost anything. (The
    service's malloc keeps buffers of up to 16 MiB on its heap, runner.tune_malloc: np.zeros
    clears every byte of one, ~3 ms for 16 MiB.)"""
    import mmap

    import numpy as np

    count = math.prod(shape)
    pages = mmap.mmap(-1, max(count * dtype.itemsize, 1))  # freed with the array
    return np.frombuffer(pages, dtype, count).reshape(shape)


async def _read(read: ReadPath, ds: Dataset, key: selection.Key, field: str | None) -> np.ndarray:
    """``_selection``'s answer, from the chunks it touches."""
    from caterva.protocol.gather import read_selection

    ndim = len(ds.info.shape)
    remote, local = key[:ndim], key[ndim:]
    needed = selection.touched_chunks(remote, ds.info.chunks, ds.info.chunk_grid)
    chunks = await read.chunks(ds, needed)  # in memory now: eviction cannot touch them
    array = await asyncio.to_thread(read_selection, ds.info, remote, chunks.__getitem__)
    if field is not None:
        array = array[field]
    return array[(Ellipsis, *local)] if local else array
