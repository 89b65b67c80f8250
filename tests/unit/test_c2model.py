"""The Caterva2 API's index keys (caterva.subscriber.c2model): parsed as numpy reads them,
refused with BadSelection when they are not keys, and the chunks they touch exactly those
holding a selected item."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from caterva.errors import BadSelection
from caterva.protocol.metadata import DatasetInfo
from caterva.subscriber import c2model

SHAPE, CHUNKS = (12, 10, 7), (5, 4, 3)


def info() -> DatasetInfo:
    nchunks = 3 * 3 * 3
    return DatasetInfo(
        path="a.b2nd",
        kind="b2nd",
        shape=list(SHAPE),
        dtype="<i8",
        chunks=list(CHUNKS),
        blocks=[5, 2, 3],
        nchunks=nchunks,
        chunksize=8 * 5 * 4 * 3,
        nbytes=8 * 12 * 10 * 7,
        cbytes=1,
        cparams={},
        vlmeta={},
        digests=["0" * 32] * nchunks,
    )


KEYS = [
    [[0, 11, -1], None, 2],
    [3, [0, 9], [6, 0]],
    ["2:7", [[1, 2], [3, 9]]],
    [[[0], [11]], "1:3", [0, 6]],  # not adjacent: blosc2 refuses, the chunks are still exact
    [None, None, []],
    [-12, "-3:", [1]],
]


def numpy_entry(entry):
    """An ``indices`` entry as numpy's own index."""
    if isinstance(entry, str):
        return slice(*(int(b) if b else None for b in entry.split(":")))
    if entry is None:
        return slice(None)
    return np.asarray(entry, dtype=np.intp) if isinstance(entry, list) else entry


@pytest.mark.parametrize("entries", KEYS)
def test_keys_read_as_numpy_and_touch_exactly_the_chunks_holding_an_item(entries):
    key = c2model.parse_indices(json.dumps(entries), list(SHAPE))
    numpy_key = tuple(numpy_entry(e) for e in entries)
    grid = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    picked = grid[numpy_key]
    assert c2model.result_size(key) == picked.size
    coords = np.unravel_index(picked.reshape(-1), SHAPE)
    holding = sorted(
        {
            int(np.ravel_multi_index(tuple(c // k for c, k in zip(point, CHUNKS)), (3, 3, 3)))
            for point in zip(*coords)
        }
    )
    assert c2model.touched(key, info()) == holding


@pytest.mark.parametrize(
    "text",
    [
        "nope",
        "{}",
        "[1, 2, 3, 4]",  # more entries than axes
        "[[1, [2]]]",  # ragged
        "[[1.5]]",
        "[[12]]",  # out of bounds
        "[[-13]]",
        "[true]",
        '["1:2:3:4"]',
        '["5"]',
        "[" * 5000 + "]" * 5000,  # nested too deeply for json
    ],
)
def test_what_is_not_a_key_is_a_bad_selection(text):
    with pytest.raises(BadSelection):
        c2model.parse_indices(text, list(SHAPE))


def test_too_many_points_and_unbroadcastable_arrays_are_refused():
    with pytest.raises(BadSelection, match="broadcast"):
        c2model.result_size(c2model.parse_indices("[[0, 1], [0, 1, 2]]", list(SHAPE)))
    rows = list(itertools.repeat(0, 1100))
    wide = c2model.parse_indices(json.dumps([[[r] for r in rows], rows]), list(SHAPE))
    with pytest.raises(BadSelection, match="batches"):
        c2model.result_size(wide)  # 1100 x 1100 points
