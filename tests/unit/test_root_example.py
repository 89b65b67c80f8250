"""The demo root: the committed files are exactly what root-example/make_examples.py writes,
they all open with blosc2, and together they cover what root-example/README.md promises."""

from __future__ import annotations

import csv
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import blosc2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "root-example"
SCRIPT = EXAMPLE / "make_examples.py"


def load_script():
    spec = importlib.util.spec_from_file_location("make_examples", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    # no root-example/__pycache__: the publisher would serve it as part of the root
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


make_examples = load_script()
PATHS = [example.path for example in make_examples.EXAMPLES]
BLOSC2_PATHS = [p for p in PATHS if p.endswith((".b2nd", ".b2frame"))]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("example")
    assert make_examples.build(out) == PATHS
    return out


def codec_and_filters(cparams) -> tuple:
    return cparams.codec, [f for f in cparams.filters if f != blosc2.Filter.NOFILTER]


def assert_same_dataset(new: Path, old: Path) -> None:
    a, b = blosc2.open(str(new)), blosc2.open(str(old))
    assert type(a) is type(b)
    assert codec_and_filters(a.cparams) == codec_and_filters(b.cparams)
    assert a.vlmeta[:] == b.vlmeta[:]
    if isinstance(a, blosc2.NDArray):
        assert (a.shape, a.dtype, a.chunks, a.blocks) == (b.shape, b.dtype, b.chunks, b.blocks)
        assert np.array_equal(a[()], b[()])
    else:
        assert (a.nchunks, a.chunksize, a.blocksize) == (b.nchunks, b.chunksize, b.blocksize)
        assert a[:] == b[:]


@pytest.mark.parametrize("path", PATHS)
def test_fresh_build_equals_committed(fresh: Path, path: str) -> None:
    assert (EXAMPLE / path).is_file(), f"{path} missing: run make_examples.py"
    if path in BLOSC2_PATHS:
        assert_same_dataset(fresh / path, EXAMPLE / path)
    assert (fresh / path).read_bytes() == (EXAMPLE / path).read_bytes(), (
        f"{path}: same values, different bytes (blosc2 upgrade?): run make_examples.py"
    )


def test_check_flag_accepts_the_committed_files() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_check_reports_changed_missing_and_stray_files(fresh: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(fresh, copy)
    (copy / "stations.csv").write_text("changed\n")
    (copy / "images" / "terrain.b2nd").unlink()
    (copy / "stray.b2nd").write_bytes(b"")
    (copy / "README.md").write_text("hand-written, ignored\n")
    assert make_examples.check(copy) == [
        "differs: stations.csv",
        "missing: images/terrain.b2nd",
        "not written by this script: stray.b2nd",
    ]


def open_all() -> dict[str, object]:
    return {path: blosc2.open(str(EXAMPLE / path)) for path in BLOSC2_PATHS}


def test_coverage() -> None:
    datasets = open_all()
    arrays = {p: d for p, d in datasets.items() if isinstance(d, blosc2.NDArray)}
    frames = {p: d for p, d in datasets.items() if isinstance(d, blosc2.SChunk)}

    assert {a.ndim for a in arrays.values()} >= {0, 1, 2, 3, 4}
    assert {a.dtype.kind for a in arrays.values()} >= set("ifcSUV")
    structured = [a.dtype for a in arrays.values() if a.dtype.kind == "V"]
    assert any(any(dt[name].subdtype for name in dt.names) for dt in structured)

    codecs, filters = set(), set()
    for d in datasets.values():
        codec, used = codec_and_filters(d.cparams)
        codecs.add(codec)
        filters.update(used)
    assert codecs >= {blosc2.Codec.ZSTD, blosc2.Codec.LZ4, blosc2.Codec.BLOSCLZ}
    assert filters >= {blosc2.Filter.SHUFFLE, blosc2.Filter.BITSHUFFLE}

    scalars = [a for a in arrays.values() if a.ndim == 0]
    value_types = {type(v) for a in scalars for v in a.vlmeta[:].values()}
    assert value_types >= {str, int, list, dict}
    assert sum("units" in a.vlmeta for a in arrays.values()) >= 3
    assert sum("description" in a.vlmeta for a in arrays.values()) >= 3

    assert frames and all(f.vlmeta[:] and f.nchunks > 1 for f in frames.values())
    assert any(f.nbytes % f.chunksize for f in frames.values())  # a partial last chunk

    assert any(len(Path(p).parts) >= 3 for p in datasets)  # e.g. climate/2024/x.b2nd


@pytest.mark.parametrize("path", [p for p in BLOSC2_PATHS if p.endswith(".b2nd")])
def test_arrays_have_several_chunks_with_partial_edges(path: str) -> None:
    a = blosc2.open(str(EXAMPLE / path))
    if a.ndim == 0:
        return
    assert a.schunk.nchunks >= 3
    assert any(size % chunk for size, chunk in zip(a.shape, a.chunks))
    assert a.blocks != a.chunks


def test_plain_files() -> None:
    assert "example" in (EXAMPLE / "README.txt").read_text()
    with open(EXAMPLE / "stations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = blosc2.open(str(EXAMPLE / "stations/names.b2nd"))[:]
    assert [r["name"] for r in rows] == list(names)


def test_readme_lists_every_dataset() -> None:
    readme = (EXAMPLE / "README.md").read_text()
    for example in make_examples.EXAMPLES + make_examples.BIG_EXAMPLES:
        assert f"`{example.path}`" in readme


def test_committed_files_are_small() -> None:
    sizes = {p: (EXAMPLE / p).stat().st_size for p in PATHS}
    assert sum(sizes.values()) < 700_000, sizes
    assert max(sizes.values()) < 200_000, sizes


def test_big_dataset_is_generated_not_committed(tmp_path: Path) -> None:
    assert "root-example/big/" in (REPO / ".gitignore").read_text().splitlines()
    written = make_examples.build(tmp_path, big=True)
    big = [p for p in written if p.startswith("big/")]
    assert big
    for path in big:
        a = blosc2.open(str(tmp_path / path))
        assert a.nbytes > 4_000_000
        assert a.schunk.nchunks >= 24
        assert all(size % chunk for size, chunk in zip(a.shape, a.chunks))
        assert (tmp_path / path).stat().st_size > 1_000_000  # why it is not committed
