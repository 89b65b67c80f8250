"""gather.Gather (the Python client's decoder) equals numpy, like read_selection: any chunk
and block shapes (blocks that split a chunk's rows reorder its bytes), any steps, ints, empty
selections and empty arrays, with chunks added in any order from several threads at once."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "root-example").rglob("*.b2nd"))


def keys_for(shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[tuple]:
    """Everything, chunks selected whole (a slab of rows, or one chunk), the last (edge)
    chunks, steps and negative steps."""
    if not shape:
        return [(...,)]
    c = chunks[0]
    return [
        (...,),
        (slice(c, 3 * c),),
        tuple(slice(0, k) for k in chunks),
        (slice(-(shape[0] % c or c), None),),
        (slice(None, None, 2),),
        (slice(None, None, -1),),
        (slice(-2, 1, -3), ...),
        (0,) if len(shape) == 1 else (slice(1, None), 0),
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_root_example_dataset_equals_numpy(path):
    nd = blosc2.open(str(path), mode="r")
    array = nd[()] if nd.shape == () else nd[...]
    info = describe(nd, path.name, "b2nd", size=0, mtime=0.0)
    for key in keys_for(nd.shape, nd.chunks):
        got = gathered(
            info, selection.normalize(key, nd.shape), nd.schunk.get_chunk, random.Random(1)
        )
        np.testing.assert_array_equal(got, np.asarray(array[key]), err_msg=f"{path.name}{key}")


@pytest.mark.parametrize(
    "shape, chunks, blocks, key, in_place",
    [
        ((40,), (8,), (4,), (slice(8, 32),), True),  # whole chunks of a 1-D array
        ((30, 6), (5, 6), (1, 6), (slice(5, 25),), True),  # slabs of whole rows
        ((12, 4, 5), (3, 4, 5), (3, 4, 5), (slice(3, 9), ...), True),
        ((40,), (8,), (4,), (slice(8, 31),), False),  # the last chunk is cut
        ((37,), (8,), (4,), (slice(32, 37),), False),  # the array's edge chunk
        ((30, 6), (5, 6), (1, 6), (slice(5, 25), slice(0, 5)), False),  # part of the rows
        ((30, 6), (5, 6), (5, 3), (slice(5, 25),), False),  # blocks split the rows
        ((30, 6), (5, 6), (2, 6), (slice(5, 25),), False),  # padded: 3 blocks of 2 rows
        ((30, 6), (5, 6), (1, 6), (slice(24, 4, -1),), False),  # backwards
        ((30, 6), (5, 6), (1, 6), (slice(5, 25, 2),), False),
        ((6, 10, 6), (2, 5, 6), (2, 5, 6), (slice(0, 4), slice(0, 10)), False),  # not one run
    ],
)
def test_chunks_selected_whole_decompress_into_the_answer(shape, chunks, blocks, key, in_place):
    """Into their place in the answer when it is one run of memory (no copy); else through a
    thread's buffer. The same values either way, structured dtypes too."""
    for dtype in (np.float32, REC):
        array = np.zeros(shape, dtype)
        values = np.arange(np.prod(shape)).reshape(shape)
        if dtype is REC:
            array["t"], array["pos"][..., 0] = values, -values
        else:
            array[...] = values
        nd = blosc2.asarray(array, chunks=chunks, blocks=blocks)
        info = describe(nd, "x.b2nd", "b2nd", size=0, mtime=0.0)
        gather = Gather(info, selection.normalize(key, shape))
        for i in selection.touched_chunks(gather.key, info.chunks, info.chunk_grid):
            gather.add(i, nd.schunk.get_chunk(i))
        np.testing.assert_array_equal(gather.result(), array[key])
        assert hasattr(gather._local, "buffers") is not in_place, (key, dtype)
