"""How `caterva show` prints an array (caterva/protocol/printing.py): numpy's text as the CLI
printed it before the subscriber printed it, and the edges a summarised array is printed from:
the values there alone give the whole array's text."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caterva.protocol import printing, selection

REC = np.dtype([("id", "<i2"), ("t", "<f8"), ("pos", "<f4", (2,)), ("tag", "S3")])


def before(value, width: int) -> str:
    """What `caterva show` printed before printing.py (caterva/cli/values.py then)."""
    with np.printoptions(linewidth=max(width, 40), threshold=1000, edgeitems=4):
        return np.array2string(np.asarray(value))


def arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    rec = np.zeros(1200, REC)
    rec["id"] = np.arange(1200)
    rec["t"] = rng.normal(size=1200)
    rec["tag"] = b"ab\x00"
    return [
        rng.normal(size=(128, 128, 128)),
        rng.normal(size=(3, 5)) * 1e-9,
        np.arange(10_000, dtype=np.int16),
        (rng.normal(size=(40, 60)) + 1j).astype(np.complex64),
        np.array(["caterva", "ünï\x1bcode", ""] * 500, dtype="U8").reshape(30, 50),
        np.array([b"\x00\xff", b"a\n"] * 600, dtype="S2"),
        rec,
        rec[5],
        np.array(6.25),
        np.zeros((0, 3)),
        np.array([np.nan, np.inf, -0.0, 1e300]),
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4) > 5,
    ]


@pytest.mark.parametrize("width", [1, 40, 80, 200, 5000])
def test_text_is_what_show_printed_before(width):
    for value in arrays():
        assert printing.text(value, width) == before(value, width)


def with_edges_only(array: np.ndarray) -> np.ndarray:
    """A copy of ``array`` holding only the values at ``printing.edges``, zeros elsewhere."""
    out = np.zeros_like(array)
    for corner in itertools.product(*printing.edges(array.shape)):
        where = tuple(slice(a, b) for a, b in corner)
        out[where] = array[where]
    return out


@settings(max_examples=150, deadline=None)
@given(
    shape=st.lists(st.integers(1, 30), min_size=1, max_size=4).filter(
        lambda s: math.prod(s) > printing.THRESHOLD
    ),
    kind=st.sampled_from(["f8", "i4", "c8", "U3", "b1"]),
    width=st.integers(1, 300),
    seed=st.integers(0, 2**16),
)
def test_a_summarised_array_prints_from_its_edges_alone(shape, kind, width, seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape) * 10.0 ** rng.integers(-12, 8)
    array = (values + 1j * values if kind == "c8" else values).astype(kind)
    # the middle holds values that would change every column's width, were they read
    array[tuple(n // 2 for n in shape)] = {"f": 1e300, "i": -(2**31), "c": 1e30, "U": "wide"}.get(
        array.dtype.kind, True
    )
    edges = printing.edges(shape)
    assert printing.printed_values(shape) == math.prod(sum(b - a for a, b in r) for r in edges)
    assert printing.text(with_edges_only(array), width) == printing.text(array, width)


def test_small_arrays_print_every_value():
    assert printing.edges((10, 100)) is None and printing.printed_values((10, 100)) == 1000
    assert printing.edges(()) is None and printing.printed_values(()) == 1
    assert printing.edges((1001,)) == [[(0, 4), (997, 1001)]]
    assert printing.edges((8, 200)) == [[(0, 8)], [(0, 4), (196, 200)]]
    assert printing.printed_values((8, 200)) == 64


def test_what_a_subscriber_prints_is_bounded():
    assert printing.fits((128, 128, 128), 8)  # 512 values
    assert printing.fits((9,) * 5, 16)  # 8**5 values
    assert not printing.fits((9,) * 6, 1)  # 8**6 values: ~1.3 s of numpy's printing
    assert printing.fits((1000,), 1024) and not printing.fits((1000,), 1100)  # bytes
    assert printing.fits((10**9,), 8)  # summarised: 8 values


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_part_of_a_selection_is_that_part_of_its_result(data):
    shape = data.draw(st.lists(st.integers(1, 12), min_size=1, max_size=3))
    original = np.arange(math.prod(shape)).reshape(shape)
    items = []
    for size in shape:
        bound = st.none() | st.integers(-size - 2, size + 2)
        step = st.none() | st.integers(-5, 5).filter(bool)
        items.append(st.one_of(st.integers(-size, size - 1), st.builds(slice, bound, bound, step)))
    key = selection.normalize(data.draw(st.tuples(*items)), shape)
    result = original[key]
    ranges = []
    for n in result.shape:
        start = data.draw(st.integers(0, n))
        ranges.append((start, data.draw(st.integers(start, n))))
    part = selection.part(key, ranges)
    expected = result[tuple(slice(a, b) for a, b in ranges)]
    assert np.array_equal(original[part], expected)
    assert set(selection.touched_chunks(part, [4] * len(shape), [3] * len(shape))) <= set(
        selection.touched_chunks(key, [4] * len(shape), [3] * len(shape))
    )
