"""The catalog's side of HDF5 files (real files, real state store, no services): a restart
reuses their datasets, a file's datasets come and go with it, recompressed chunks are made on
demand, kept by digest and collected, and without h5py an HDF5 file is only a plain file."""

from __future__ import annotations

import logging
import os
import sys

import blosc2
import numpy as np
import pytest

from caterva.protocol.metadata import DatasetInfo
from caterva.publisher import hdf5
from caterva.publisher.catalog import Catalog
from caterva.publisher.store import Store

h5py = pytest.importorskip("h5py")
hdf5plugin = pytest.importorskip("hdf5plugin")

VARS = {"t.h5/zipped", "t.h5/group/blosc2", "t.h5/flat"}


def make(path, scale=1):
    """Written aside and renamed in (this process may hold the old file open: HDF5 refuses
    to truncate a file its own process has open)."""
    aside = path.with_name(".new.h5")
    with h5py.File(aside, "w") as f:
        data = np.arange(60 * 40, dtype="f4").reshape(60, 40) * scale
        f.create_dataset("zipped", data=data, chunks=(16, 16), compression="gzip")
        f.create_dataset("group/blosc2", data=data, chunks=(16, 16), **hdf5plugin.Blosc2())
        f.create_dataset("flat", data=np.arange(10_000, dtype="i8"))
    os.replace(aside, path)


def members(catalog):
    return {p for p, e in catalog._entries.items() if isinstance(e, hdf5.Member)}


def test_a_restart_reuses_the_datasets_of_an_unchanged_file(tmp_path, monkeypatch):
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    state.mkdir()
    make(root / "t.h5")
    store = Store.open(state)
    first = Catalog("r", root, state / "frames", frame_chunksize=16384)
    result = first.scan()
    assert {d.path for d in result.diffs} == VARS | {"t.h5"} and members(first) == VARS
    store.save_all(result.entries.values())
    store.close()

    decoded = []  # stored descriptions are reused as text, members' too
    real_decode = DatasetInfo.from_dict
    monkeypatch.setattr(
        DatasetInfo, "from_dict", lambda body: decoded.append(1) or real_decode(body)
    )
    store = Store.open(state)
    again = Catalog("r", root, state / "frames", known=store.load(), frame_chunksize=16384)
    store.close()
    monkeypatch.setattr(hdf5, "describe_file", lambda *a: pytest.fail("described again"))
    assert again.scan().diffs == [] and members(again) == VARS
    assert decoded == []
    assert again.manifest.etag == first.manifest.etag
    flat = again.get("t.h5/flat")
    assert np.frombuffer(blosc2.decompress(flat.read_chunk(1)[0]), "i8")[0] == 2048

    (root / "t.h5").unlink()  # its datasets go with it
    gone = again.scan()
    assert {(d.op, d.path) for d in gone.diffs} == {("delete", p) for p in VARS | {"t.h5"}}
    assert again._entries == {}


def test_recompressed_chunks_are_made_on_demand_kept_by_digest_and_collected(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    make(root / "t.h5")
    catalog = Catalog("r", root, tmp_path / "state" / "frames")
    catalog.scan()
    kept = tmp_path / "state" / "hdf5"
    assert not list(kept.rglob("*"))  # describing keeps nothing: chunks are made when asked
    zipped = catalog.get("t.h5/zipped")
    data, digest = zipped.read_chunk(3)
    assert (kept / digest[:2] / digest).read_bytes() == data
    catalog.get("t.h5/group/blosc2").read_chunk(0)  # passed through: nothing to keep
    assert len(list(kept.rglob("*/*"))) == 1

    make(root / "t.h5", scale=2)  # the arrays change (flat does not): the kept chunk goes
    result = catalog.refresh(["t.h5"])
    told = {d.path: d.chunks for d in result.diffs}
    assert told.keys() == {"t.h5", "t.h5/zipped", "t.h5/group/blosc2"}
    assert told["t.h5/zipped"] == list(range(12))  # an update, told chunk by chunk
    assert not list(kept.rglob("*/*"))
    assert catalog.get("t.h5/zipped").read_chunk(3)[1] != digest


def test_a_file_is_not_served_while_it_is_being_rewritten(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    make(root / "t.h5")
    catalog = Catalog("r", root, tmp_path / "state" / "frames")
    catalog.scan()
    flat = catalog.get("t.h5/flat")
    make(root / "t.h5", scale=3)
    os.utime(root / "t.h5", ns=(1, 1))
    with pytest.raises(Exception, match="being written"):
        flat.read_chunk(0)


def test_without_h5py_an_hdf5_file_is_a_plain_file_said_once(tmp_path, monkeypatch, caplog):
    root = tmp_path / "root"
    root.mkdir()
    make(root / "t.h5")
    make(root / "u.h5")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py raises ImportError
    monkeypatch.setattr(hdf5, "_h5py", [])
    with caplog.at_level(logging.INFO, logger="caterva.publisher"):
        catalog = Catalog("r", root, tmp_path / "state" / "frames")
        result = catalog.scan()
    assert {d.path for d in result.diffs} == {"t.h5", "u.h5"}
    assert {e.info.kind for e in result.entries.values()} == {"file"}
    said = [r.message for r in caplog.records if "h5py" in r.message]
    assert said == ["h5py is not installed: HDF5 files are served as plain files only"]


def test_a_file_first_described_without_h5py_gets_its_datasets_once_h5py_is_there(
    tmp_path, monkeypatch
):
    """A restart reuses what it stored, but a file stored as a plain file only because h5py
    was missing then is described again, its datasets served."""
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    state.mkdir()
    make(root / "t.h5")
    with monkeypatch.context() as without:
        without.setitem(sys.modules, "h5py", None)
        without.setattr(hdf5, "_h5py", [])
        plain = Catalog("r", root, state / "frames", frame_chunksize=16384)
        result = plain.scan()
    assert members(plain) == set()
    store = Store.open(state)
    store.save_all(result.entries.values())
    store.close()

    monkeypatch.setattr(hdf5, "_h5py", [])  # looked for again, and found
    store = Store.open(state)
    again = Catalog("r", root, state / "frames", known=store.load(), frame_chunksize=16384)
    store.close()
    found = again.scan()
    assert members(again) == VARS
    assert {d.path for d in found.diffs} == VARS | {"t.h5"}  # the file's vlmeta lists them
