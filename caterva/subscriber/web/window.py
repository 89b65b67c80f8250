"""What part of an N-D dataset a page shows, and reading exactly that.

A view is two axes of the array (one for a 1-D array) at an index on every other axis (query
parameters ``rows``, ``cols``, ``i0``, ``i1``, ...; ``r0``, ``c0`` place the window): the
table shows a window of ROWS x COLS of that plane, the image the whole plane (every k-th row
and column when it is larger than IMAGE_SIDE). ``select`` reads a selection as
``GET /v1/roots/{root}/data`` does: only the chunks it touches, through the read path (cache,
else the root's source), bounded by the same NPY_MAX.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import numpy as np

from caterva.errors import BadSelection
from caterva.protocol import rest, selection
from caterva.protocol.dtypes import dtype_from_json
from caterva.protocol.metadata import DatasetInfo
from caterva.subscriber.read import ReadPath
from caterva.subscriber.state import Dataset

ROWS, COLS = 20, 10  # the table's window
IMAGE_SIDE = 512  # pixels an image has at most along each side


async def select(read: ReadPath, ds: Dataset, key: Any) -> np.ndarray:
    """``dataset[key]`` from the chunks it touches, and no others."""
    from caterva.protocol.gather import read_selection

    key = selection.normalize(key, ds.info.shape)
    itemsize = dtype_from_json(ds.info.dtype).itemsize
    nbytes = math.prod(selection.result_shape(key)) * itemsize
    if nbytes > rest.NPY_MAX:
        raise BadSelection(f"{nbytes:,} bytes is more than the {rest.NPY_MAX:,} a page reads")
    needed = selection.touched_chunks(key, ds.info.chunks, ds.info.chunk_grid)
    chunks = await read.chunks(ds, needed) if needed else {}
    return await asyncio.to_thread(read_selection, ds.info, key, chunks.__getitem__)


def _int(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """An integer parameter, clamped to [lo, hi] (a page past the end shows the last one)."""
    text = params.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadSelection(f"{name} must be an integer, not {selection.describe(text)}") from None
    return min(max(value, lo), hi)


@dataclass(frozen=True)
class View:
    shape: tuple[int, ...]
    fields: tuple[str, ...]  # of a structured dtype
    rows: int | None  # the axis down the table (None: a 0-d array)
    cols: int | None  # the axis across (None: a 1-D view)
    at: tuple[int, ...]  # an index on every axis (unused on rows and cols)
    r0: int = 0
    c0: int = 0
    field: str | None = None  # the field a 2-D view of a structured dtype shows

    @classmethod
    def parse(cls, info: DatasetInfo, params: Mapping[str, str]) -> View:
        shape = tuple(info.shape)
        ndim = len(shape)
        fields = tuple(dtype_from_json(info.dtype).names or ())
        last = max(ndim - 1, 0)
        rows = _int(params, "rows", max(ndim - 2, 0), 0, last) if ndim else None
        cols = _int(params, "cols", ndim - 1, 0, last) if ndim >= 2 else None
        if cols is not None and cols == rows:
            raise BadSelection("the table's rows and columns must be two different axes")
        at = tuple(_int(params, f"i{d}", 0, 0, max(shape[d] - 1, 0)) for d in range(ndim))
        field = params.get("field") or None
        if field is not None and field not in fields:
            raise BadSelection(f"no field {field!r}: the fields are {', '.join(fields) or 'none'}")
        if cols is not None and fields and field is None:
            field = fields[0]
        r0 = _int(params, "r0", 0, 0, max(shape[rows] - 1, 0)) if rows is not None else 0
        c0 = _int(params, "c0", 0, 0, max(shape[cols] - 1, 0)) if cols is not None else 0
        return cls(shape, fields, rows, cols, at, r0, c0, field)

    def _key(self, row: slice, col: slice) -> tuple:
        axes = {self.rows: row, self.cols: col}
        return tuple(axes.get(d, i) for d, i in enumerate(self.at))

    def window_key(self) -> tuple:
        return self._key(slice(self.r0, self.r0 + ROWS), slice(self.c0, self.c0 + COLS))

    def steps(self) -> tuple[int, int]:
        """Every how many rows and columns the image takes one."""
        if self.cols is None:
            raise BadSelection("an image needs a 2-D plane: this dataset has one axis")
        h, w = self.shape[self.rows], self.shape[self.cols]
        return max(1, -(-h // IMAGE_SIDE)), max(1, -(-w // IMAGE_SIDE))

    def plane_key(self, strided: bool = True) -> tuple:
        """The whole plane; ``strided``: every k-th row and column, as the image shows it."""
        step_r, step_c = self.steps() if strided else (1, 1)
        return self._key(slice(None, None, step_r), slice(None, None, step_c))

    def oriented(self, array: np.ndarray) -> np.ndarray:
        """A 2-D result with the rows axis first (numpy keeps the array's axis order)."""
        if self.cols is not None and self.rows > self.cols:
            array = array.T
        return array[self.field] if self.field and array.dtype.names else array

    def query(self, **change: Any) -> str:
        """This view's URL query, with ``change``s (None: a parameter left out)."""
        view = replace(self, **{k: v for k, v in change.items() if k in self.__dataclass_fields__})
        shown = (view.rows, view.cols)
        params = {
            "rows": view.rows,
            "cols": view.cols,
            **{f"i{d}": i or None for d, i in enumerate(view.at) if d not in shown},
            "r0": view.r0 or None,
            "c0": view.c0 or None,
            "field": view.field,
        }
        params.update({k: v for k, v in change.items() if k not in self.__dataclass_fields__})
        return urlencode({k: v for k, v in params.items() if v is not None})

    def pages(self) -> dict[str, int | None]:
        """The window's neighbours: r0/c0 of the previous and next pages (None: none)."""
        out: dict[str, int | None] = {"up": None, "down": None, "left": None, "right": None}
        if self.rows is not None:
            out["up"] = max(self.r0 - ROWS, 0) if self.r0 else None
            below = self.r0 + ROWS
            out["down"] = below if below < self.shape[self.rows] else None
        if self.cols is not None:
            out["left"] = max(self.c0 - COLS, 0) if self.c0 else None
            right = self.c0 + COLS
            out["right"] = right if right < self.shape[self.cols] else None
        return out


def cell(value: Any) -> str:
    """A value as the table shows it: floats as their shortest exact repr."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(cell(v) for v in value) + ")"
    return str(value)


def table(view: View, array: np.ndarray) -> dict[str, Any]:
    """Column labels and (row label, cells) of a window read with ``view.window_key()``."""
    if view.rows is None:  # a 0-d array: one value
        return {"columns": ["value"], "rows": [("", [cell(array.tolist())])]}
    array = view.oriented(array)
    labels = range(view.r0, view.r0 + array.shape[0])
    if view.cols is None:
        if array.dtype.names:  # 1-D structured: one column per field
            values = [[cell(v) for v in record] for record in array.tolist()]
            return {"columns": list(array.dtype.names), "rows": list(zip(labels, values))}
        values = [[cell(v)] for v in array.tolist()]
        return {"columns": ["value"], "rows": list(zip(labels, values))}
    columns = [str(c) for c in range(view.c0, view.c0 + array.shape[1])]
    values = [[cell(v) for v in row] for row in array.tolist()]
    return {"columns": columns, "rows": list(zip(labels, values))}
