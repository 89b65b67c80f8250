"""NpyBody: an .npy answer read piece by piece equals numpy's own reading of it, wherever the
pieces are cut, and a body that is not the array asked for fails as a ProtocolError."""

from __future__ import annotations

import io

import numpy as np
import pytest

from caterva.client.npybody import NpyBody
from caterva.errors import ProtocolError


def npy(array: np.ndarray, version=(1, 0)) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, array, version=version, allow_pickle=False)
    return out.getvalue()


def read(body: bytes, want: tuple[int, ...], cut: int) -> np.ndarray:
    reader = NpyBody(want)
    pieces = [body[at : at + cut] for at in range(0, len(body), cut)]
    for at in range(0, len(pieces), 3):  # several pours of several pieces, as the client does
        reader.pour(pieces[at : at + 3])
    return reader.result()


ARRAYS = {
    "float": np.arange(6 * 7 * 5, dtype=np.float64).reshape(6, 7, 5),
    "fortran": np.asfortranarray(np.arange(24, dtype=np.int16).reshape(4, 6)),
    "records": np.array([(1, 2.5), (3, -1.0)], dtype=[("a", "<i4"), ("b", ">f8")]),
    "0-d": np.array(7.5),
    "empty": np.zeros((3, 0), np.uint8),
}


@pytest.mark.parametrize("name", ARRAYS)
@pytest.mark.parametrize("cut", [1, 7, 64, 1 << 20])
def test_pieces_cut_anywhere_give_the_array(name, cut):
    original = ARRAYS[name]
    got = read(npy(original), original.shape, cut)
    assert got.dtype == original.dtype and got.shape == original.shape
    assert np.array_equal(got, original)
    got[...] = original  # writable, as numpy's reader gives it


def test_format_2_header():
    original = np.arange(10.0)
    assert np.array_equal(read(npy(original, (2, 0)), (10,), 5), original)


@pytest.mark.parametrize(
    "body, want, message",
    [
        (b"", (3,), "ends inside its header"),
        (b"\x93NUMPY garbage", (3,), ".npy"),
        (b"PK\x03\x04 not npy at all", (3,), ".npy"),
        (npy(np.arange(3.0))[:-1], (3,), "23 of the 24 bytes"),
        (npy(np.arange(3.0)) + b"x", (3,), "longer than its header"),
        (npy(np.arange(4.0)), (3,), r"asked for shape \(3,\)"),
    ],
)
def test_a_body_that_is_not_the_array_asked_for(body, want, message):
    with pytest.raises(ProtocolError, match=message):
        read(body, want, 16)


def test_a_huge_shape_fails_before_anything_is_allocated():
    header = npy(np.zeros(1))
    body = header.replace(b"(1,)", b"(10000000000000,)".ljust(4))  # claims 80 TB
    with pytest.raises(ProtocolError, match="asked for shape"):
        read(body, (1,), 1 << 20)


def test_object_arrays_are_refused():
    header = npy(np.zeros(2)).replace(b"'<f8'", b"'|O' ")
    with pytest.raises(ProtocolError, match="object"):
        read(header, (2,), 1 << 20)
