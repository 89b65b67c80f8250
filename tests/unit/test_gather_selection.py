"""gather.Gather (the Python client's decoder) equals numpy, like read_selection: any chunk
and block shapes (blocks that split a chunk's rows reorder its bytes), any steps, ints, empty
selections and empty arrays, with chunks added in any order from several threads at once."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import blosc2
import numpy as np
import pytest

from caterva.protocol import selection
from caterva.protocol.gather import Gather
from caterva.protocol.layout import describe

REC = np.dtype([("id", "<i2"), ("t", "<f8"), ("pos", "<f4", (2,))])


def gathered(info, key, get_chunk, rng: random.Random):
    """``Gather`` fed the chunks ``key`` touches shuffled, by three threads."""
    gather = Gather(info, key)
    needed = selection.touched_chunks(key, info.chunks, info.chunk_grid)
    rng.shuffle(needed)
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda i: gather.add(i, get_chunk(i)), needed))
    return gather.result()


def random_key(rng: random.Random, shape: tuple[int, ...]) -> tuple:
    key = []
    for size in shape:
        if size and rng.random() < 0.25:
            key.append(rng.randint(-size, size - 1))
        else:
            ends = [None, rng.randint(-size - 2, size + 2)]
            key.append(
                slice(
                    rng.choice(ends), rng.choice(ends), rng.choice([None, 1, 2, 3, -1, -2, -5, 7])
                )
            )
    return tuple(key)


@pytest.mark.parametrize("seed", range(40))
def test_equals_numpy(seed):
    rng = random.Random(seed)
    shape = tuple(rng.randint(1, 12) for _ in range(rng.randint(1, 3)))
    chunks = tuple(rng.randint(1, s + 2) for s in shape)
    blocks = tuple(rng.randint(1, c) for c in chunks)
    values = np.random.default_rng(seed).integers(0, 1000, size=shape)
    dtype = rng.choice([np.float64, np.int16, REC])
    if dtype is REC:
        array = np.zeros(shape, REC)
        array["t"], array["pos"][..., 1] = values, -values
    else:
        array = values.astype(dtype)
    nd = blosc2.asarray(array, chunks=chunks, blocks=blocks)
    info = describe(nd, "x.b2nd", "b2nd", size=0, mtime=0.0)
    for _ in range(10):
        key = random_key(rng, shape)
        got = gathered(info, selection.normalize(key, shape), nd.schunk.get_chunk, rng)
        want = np.asarray(array[key])
        assert (got.shape, got.dtype) == (want.shape, want.dtype), (chunks, blocks, key)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("shape", [(0,), (3, 0), ()])
def test_empty_and_zero_d_arrays(shape):
    array = np.full(shape, 1.5)
    nd = blosc2.asarray(array) if shape else blosc2.asarray(array, chunks=(), blocks=())
    info = describe(nd, "x.b2nd", "b2nd", size=0, mtime=0.0)
    key = selection.normalize((...,), shape)
    got = gathered(info, key, nd.schunk.get_chunk, random.Random(0))
    np.testing.assert_array_equal(got, array)
