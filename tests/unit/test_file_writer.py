"""layout.FileWriter writes a Blosc2 frame itself (blosc2's own writer starts four threads
per file): the file must read back, through blosc2, as the very dataset it came from. Its
header and trailer follow from the chunk sizes alone (frame_bounds): what a subscriber streams."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import blosc2
import numpy as np
import pytest

from caterva.protocol import layout
from caterva.protocol.layout import (
    FileWriter,
    describe,
    frame_bounds,
    new_container,
)

EXAMPLES = sorted((Path(__file__).parents[2] / "root-example").rglob("*.b2nd"))


def written(source: blosc2.NDArray, dest: Path) -> FileWriter:
    info = describe(source, "x.b2nd", "b2nd", size=0, mtime=0)
    with FileWriter(info, dest) as writer:
        for i in range(source.schunk.nchunks):
            writer.add(source.schunk.get_chunk(i))
    return writer


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_a_written_frame_is_the_dataset(path, tmp_path):
    source = blosc2.open(str(path), mode="r")
    writer = written(source, tmp_path / "out.b2nd")
    assert writer._ends is not None  # the frame was written here, not by blosc2
    copy = blosc2.open(str(tmp_path / "out.b2nd"), mode="r")
    assert (copy.shape, copy.dtype, copy.chunks, copy.blocks) == (
        source.shape,
        source.dtype,
        source.chunks,
        source.blocks,
    )
    assert copy[()].tobytes() == source[()].tobytes()
    assert copy.schunk.vlmeta.getall() == source.schunk.vlmeta.getall()
    assert copy.schunk.cparams == source.schunk.cparams
    assert (copy.schunk.nbytes, copy.schunk.cbytes) == (source.schunk.nbytes, source.schunk.cbytes)
    # the header is blosc2's own but for the frame size (our chunk index compresses apart)
    own = new_container(writer.info)
    for i in range(source.schunk.nchunks):
        own.schunk.update_chunk(i, source.schunk.get_chunk(i))
    expected, got = own.schunk.to_cframe(), (tmp_path / "out.b2nd").read_bytes()
    (size,) = struct.unpack_from(">i", expected, 11)
    assert got[:16] + got[24:size] == expected[:16] + expected[24:size]
    assert struct.unpack_from(">Q", got, 16) == (len(got),)


def test_an_empty_array_is_written_here_too(tmp_path):
    source = blosc2.zeros((0, 4), dtype=np.float32, chunks=(2, 4), blocks=(1, 4))
    writer = written(source, tmp_path / "empty.b2nd")
    assert writer._ends is not None
    assert blosc2.open(str(tmp_path / "empty.b2nd")).shape == (0, 4)
    assert (tmp_path / "empty.b2nd").read_bytes() == source.schunk.to_cframe()


@pytest.mark.parametrize("size", [0, 1000, 3600])
def test_a_frame_of_an_schunk_is_the_dataset(size, tmp_path):
    """A .b2frame: chunks of one size but the last, no metalayers, vlmeta kept."""
    source = blosc2.SChunk(chunksize=1000, data=(bytes(range(250)) * 15)[:size])
    source.vlmeta["rate"] = 100
    info = describe(source, "x.b2frame", "b2frame", size=0, mtime=0)
    chunks = [source.get_chunk(i) for i in range(source.nchunks)]
    with FileWriter(info, tmp_path / "out.b2frame") as writer:
        for raw in chunks:
            writer.add(raw)
    copy = blosc2.open(str(tmp_path / "out.b2frame"), mode="r")
    assert (copy.nchunks, copy.nbytes, copy.vlmeta.getall()) == (len(chunks), size, {"rate": 100})
    assert copy[:] == source[:]
    head, tail = frame_bounds(info, [len(c) for c in chunks])
    assert (tmp_path / "out.b2frame").read_bytes() == head + b"".join(chunks) + tail


def test_chunks_given_as_pieces_and_short_writes_make_the_same_file(tmp_path, monkeypatch):
    """The client hands each chunk as the pieces it received (rest.BatchReader joined=False),
    written with writev: the file is the one whole chunks make, even when the kernel takes
    only a few bytes per call."""
    source = blosc2.open(str(EXAMPLES[0]), mode="r")
    whole = written(source, tmp_path / "whole.b2nd")
    writev = layout.os.writev
    monkeypatch.setattr(layout.os, "writev", lambda fd, pieces: writev(fd, [pieces[0][:7]]))
    with FileWriter(whole.info, tmp_path / "pieces.b2nd") as writer:
        for i in range(source.schunk.nchunks):
            raw = source.schunk.get_chunk(i)
            writer.add([memoryview(raw)[k : k + 100] for k in range(0, len(raw), 100)])
    got = (tmp_path / "pieces.b2nd").read_bytes()
    assert got == (tmp_path / "whole.b2nd").read_bytes()
    assert blosc2.open(str(tmp_path / "pieces.b2nd"))[()].tobytes() == source[()].tobytes()


def test_vlmeta_keeps_the_order_of_each_info_asked_for(tmp_path):
    """Frame ends are cached by layout: two infos that differ only in vlmeta order (a file
    described here, the same dataset's info from a subscriber's JSON) each get their own."""
    source = blosc2.asarray(np.arange(400, dtype=np.int32), chunks=(200,), blocks=(100,))
    source.schunk.vlmeta["units"] = "degC"
    source.schunk.vlmeta["description"] = "d"
    info = describe(source, "x.b2nd", "b2nd", size=0, mtime=0)
    for n, vlmeta in enumerate((info.vlmeta, dict(sorted(info.vlmeta.items())))):
        with FileWriter(replace(info, vlmeta=vlmeta), tmp_path / f"{n}.b2nd") as writer:
            for i in range(source.schunk.nchunks):
                writer.add(source.schunk.get_chunk(i))
        copy = blosc2.open(str(tmp_path / f"{n}.b2nd"), mode="r")
        assert list(copy.schunk.vlmeta.getall()) == list(vlmeta)


def _special(kind: str) -> blosc2.NDArray:
    """Arrays whose chunks blosc2 keeps as their header alone (zeros, NaNs, uninitialized),
    and one where such chunks sit between chunks with bytes."""
    spec = {"chunks": (200,), "blocks": (100,)}
    if kind == "zeros":
        return blosc2.zeros((400,), np.int32, **spec)
    if kind == "nan":
        return blosc2.full((400,), np.nan, dtype=np.float64, **spec)
    if kind == "uninit":
        return blosc2.uninit((400,), np.int32, **spec)
    mixed = blosc2.zeros((600,), np.float64, **spec)
    mixed[200:400] = np.arange(200.0)
    return mixed


@pytest.mark.parametrize("kind", ["zeros", "nan", "uninit", "mixed"])
def test_chunks_kept_as_their_header_alone_go_to_the_index(kind, tmp_path):
    """blosc2 refuses to open a frame holding such a chunk as bytes ("Cannot inspect the first
    chunk in frame"): a dataset of zeros downloaded by chunks did not open."""
    source = _special(kind)
    assert 32 in {len(source.schunk.get_chunk(i)) for i in range(source.schunk.nchunks)} or (
        kind == "nan"  # blosc2 may keep NaNs as a repeated value, with its bytes
    )
    written(source, tmp_path / "out.b2nd")
    copy = blosc2.open(str(tmp_path / "out.b2nd"), mode="r")
    if kind != "uninit":  # uninitialized memory has no value to compare
        assert np.array_equal(copy[:], source[:], equal_nan=True)
    assert copy.shape == source.shape and copy.schunk.nchunks == source.schunk.nchunks
