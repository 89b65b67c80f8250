"""The publisher's catalog: scanning DIR, describing files, diffing scans (no sockets)."""

from __future__ import annotations

import os
from dataclasses import replace

import blosc2
import numpy as np
import pytest

from caterva.errors import ChunkOutOfRange, InvalidName, UnknownDataset
from caterva.protocol.metadata import chunk_digest
from caterva.publisher.catalog import Catalog
from caterva.publisher.entry import Entry, diff
from caterva.publisher.store import SCHEMA_VERSION, Store


def make_array(path, value=0.0, shape=(40, 40), chunks=(10, 40)):
    """A 4-chunk float array, written atomically (as a careful writer would)."""
    data = np.arange(np.prod(shape), dtype="f8").reshape(shape) + value
    tmp = path.with_name(f".{path.name}.tmp")
    blosc2.asarray(data, chunks=chunks, blocks=(5, 20), urlpath=str(tmp), mode="w")
    os.replace(tmp, path)
    return data


def rewrite_rows(path, rows, value):
    arr = blosc2.open(str(path), mode="a")
    arr[rows] = value
    del arr


@pytest.fixture
def root(tmp_path):
    d = tmp_path / "root"
    d.mkdir()
    return d


def catalog(root, tmp_path, known=None, chunksize=1000):
    return Catalog(
        "demo", root, tmp_path / "state" / "frames", known=known or {}, frame_chunksize=chunksize
    )


def ops(result):
    return [(d.op, d.path, d.chunks) for d in result.diffs]


# --- diff: pure logic -------------------------------------------------------------------------


def test_diff_reports_create_update_delete_and_exact_chunks(root, tmp_path):
    make_array(root / "a.b2nd")
    make_array(root / "b.b2nd")
    infos = {p: e.info for p, e in catalog(root, tmp_path).scan().entries.items()}
    a, b = infos["a.b2nd"], infos["b.b2nd"]
    a2 = replace(a, digests=[a.digests[0], "f" * 32, a.digests[2], "e" * 32], etag="")
    reshaped = replace(b, shape=[80, 20], etag="")

    def diff_of(old, new):
        def entries(infos):
            return {p: Entry.described(p, 0, i, None, None) for p, i in infos}

        return diff(entries(old.items()), entries(new.items()))

    result = diff_of({"a.b2nd": a, "b.b2nd": b}, {"a.b2nd": a2, "b.b2nd": reshaped, "c": a})
    assert [(d.op, d.path, d.chunks) for d in result] == [
        ("update", "a.b2nd", [1, 3]),
        ("update", "b.b2nd", None),  # layout changed: refetch everything
        ("create", "c", None),
    ]
    assert [(d.op, d.path) for d in diff_of({"a.b2nd": a}, {})] == [("delete", "a.b2nd")]
    assert diff_of(infos, dict(infos)) == []
    touched = replace(a, mtime=a.mtime + 10, size=a.size + 1)  # metadata only, same content
    assert touched.etag == a.etag and diff_of({"a.b2nd": a}, {"a.b2nd": touched}) == []


# --- scanning ---------------------------------------------------------------------------------


def test_scan_sees_create_partial_update_delete(root, tmp_path):
    make_array(root / "a.b2nd")
    (root / "sub").mkdir()
    make_array(root / "sub" / "b.b2nd")
    cat = catalog(root, tmp_path)
    assert ops(cat.scan()) == [("create", "a.b2nd", None), ("create", "sub/b.b2nd", None)]
    assert ops(cat.scan()) == []

    rewrite_rows(root / "a.b2nd", slice(20, 25), -1.0)  # rows 20-24 live in chunk 2 only
    assert ops(cat.scan()) == [("update", "a.b2nd", [2])]

    os.utime(root / "a.b2nd")  # touched, not changed: no event, but the stat cache moves on
    result = cat.scan()
    assert ops(result) == [] and [e.path for e in result.refreshed] == ["a.b2nd"]

    (root / "sub" / "b.b2nd").unlink()
    assert ops(cat.scan()) == [("delete", "sub/b.b2nd", None)]
    assert [d.path for d in cat.manifest.datasets] == ["a.b2nd"]


def test_scan_skips_hidden_temp_links_out_and_bad_names(root, tmp_path):
    outside = tmp_path / "secret.b2nd"
    make_array(outside)
    make_array(root / "ok.b2nd")
    make_array(root / ".hidden.b2nd")
    (root / ".git").mkdir()
    make_array(root / ".git" / "x.b2nd")
    (root / "upload.b2nd.part").write_bytes(b"half")
    (root / "notes.txt~").write_text("editor backup")
    (root / "bad+name.txt").write_text("an MQTT wildcard in the name")
    (root / "escape.b2nd").symlink_to(outside)
    (root / "alias.b2nd").symlink_to(root / "ok.b2nd")  # a link inside the root is fine
    (root / "dangling").symlink_to(tmp_path / "missing")
    (root / "state" / "frames").mkdir(parents=True)  # a statedir inside DIR is not published
    (root / "state" / "frames" / "x.b2frame").write_bytes(b"")
    cat = Catalog("demo", root, root / "state" / "frames")
    assert ops(cat.scan()) == [("create", "alias.b2nd", None), ("create", "ok.b2nd", None)]
    with pytest.raises(UnknownDataset):
        cat.get("escape.b2nd")


def test_unreadable_file_is_retried_until_complete(root, tmp_path):
    (root / "a.b2nd").write_bytes(b"\0" * 100)  # a writer's first bytes: not a frame yet
    cat = catalog(root, tmp_path)
    assert ops(cat.scan()) == []
    make_array(root / "a.b2nd")
    assert ops(cat.scan()) == [("create", "a.b2nd", None)]


def test_a_file_being_copied_in_is_reported_once_not_at_every_scan(root, tmp_path, caplog):
    caplog.set_level("INFO", logger="caterva.publisher")

    def skipped():
        return [r for r in caplog.records if r.getMessage().startswith("skipping 'a.b2nd'")]

    cat = catalog(root, tmp_path)
    with open(root / "a.b2nd", "wb") as copying:
        for _ in range(3):  # every scan sees it longer (a new stat), still not a frame
            copying.write(b"\0" * 100)
            copying.flush()
            assert ops(cat.scan()) == []
    assert len(skipped()) == 1, caplog.text
    make_array(root / "a.b2nd")
    assert ops(cat.scan()) == [("create", "a.b2nd", None)]
    (root / "a.b2nd").write_bytes(b"\0" * 100)  # readable in between: said again
    cat.scan()
    assert len(skipped()) == 2


def test_restart_reuses_cached_digests_and_finds_changes_made_while_down(root, tmp_path):
    make_array(root / "a.b2nd")
    make_array(root / "b.b2nd")
    (root / "c.txt").write_bytes(b"plain " * 1000)
    first = catalog(root, tmp_path)
    first.scan()
    known = {p: (e.stamp, e.text) for p, e in first.scan().entries.items()}

    again = catalog(root, tmp_path, known=known)
    assert ops(again.scan()) == [] and again.described == 0  # nothing was read again

    rewrite_rows(root / "b.b2nd", slice(0, 3), 7.0)
    (root / "c.txt").unlink()
    make_array(root / "d.b2nd")
    later = catalog(root, tmp_path, known=known)
    assert ops(later.scan()) == [
        ("update", "b.b2nd", [0]),
        ("delete", "c.txt", None),
        ("create", "d.b2nd", None),
    ]
    assert later.described == 2  # only the changed and the new file


def test_plain_file_becomes_chunked_frame_built_once(root, tmp_path):
    payload = os.urandom(2500) + b"pattern" * 500  # 6000 bytes: 6 chunks of 1000
    (root / "data.bin").write_bytes(payload)
    cat = catalog(root, tmp_path, chunksize=1000)
    cat.scan()
    entry = cat.get("data.bin")
    info = entry.info
    assert (info.kind, info.nchunks, info.size, info.nbytes, info.shape) == (
        "file",
        6,
        6000,
        6000,
        [6000],
    )
    parts = []
    for i in range(info.nchunks):
        raw, digest = entry.read_chunk(i)
        assert digest == chunk_digest(raw) == info.digests[i]
        parts.append(blosc2.decompress(raw))
    assert b"".join(parts) == payload
    with pytest.raises(ChunkOutOfRange):
        entry.read_chunk(6)

    built = cat.described
    cat.scan()
    assert cat.described == built  # unchanged source: the frame is not rebuilt
    old_frame = entry.frame
    (root / "data.bin").write_bytes(payload[:5000] + b"X" * 1000)
    assert ops(cat.scan()) == [("update", "data.bin", [5])]
    assert old_frame.exists()  # kept one more scan for readers still using it
    cat.scan()
    assert not old_frame.exists() and cat.get("data.bin").frame.exists()


def test_empty_plain_file_and_b2frame_kinds(root, tmp_path):
    (root / "empty.dat").write_bytes(b"")
    schunk = blosc2.SChunk(
        chunksize=800, urlpath=str(root / "s.b2frame"), mode="w", cparams=blosc2.CParams(typesize=8)
    )
    schunk.append_data(np.arange(100, dtype="i8"))
    schunk.append_data(np.arange(100, 200, dtype="i8"))
    del schunk
    cat = catalog(root, tmp_path)
    cat.scan()
    empty = cat.get("empty.dat").info
    assert (empty.nchunks, empty.chunksize, empty.shape) == (0, 1000, [0])
    frame = cat.get("s.b2frame").info
    assert (frame.kind, frame.nchunks, frame.shape) == ("b2frame", 2, [1600])


def test_get_refuses_bad_and_escaping_paths(root, tmp_path):
    make_array(root / "a.b2nd")
    cat = catalog(root, tmp_path)
    cat.scan()
    for bad in ("../a.b2nd", "/etc/passwd", "a/./b", "", "x#y"):
        with pytest.raises(InvalidName):
            cat.get(bad)
    with pytest.raises(UnknownDataset):
        cat.get("missing.b2nd")
    # a file swapped for a link out of the root after the scan is refused at request time
    outside = tmp_path / "outside.b2nd"
    make_array(outside)
    (root / "a.b2nd").unlink()
    (root / "a.b2nd").symlink_to(outside)
    with pytest.raises(UnknownDataset) as err:
        cat.get("a.b2nd")
    assert str(tmp_path) not in str(err.value)


# --- the state store --------------------------------------------------------------------------


def test_store_keeps_pub_id_and_announced_state(root, tmp_path):
    make_array(root / "a.b2nd")
    state = tmp_path / "state"
    state.mkdir()
    store = Store.open(state)
    pub_id, fresh = store.identity()
    assert fresh
    entry = catalog(root, tmp_path).scan().entries["a.b2nd"]
    store.save(entry)
    store.close()

    store = Store.open(state)
    assert store.identity() == (pub_id, False)
    assert store.load() == {"a.b2nd": (entry.stamp, entry.text)}
    store.delete("a.b2nd")
    assert store.load() == {}
    store.close()


def test_store_is_exclusive_and_refuses_a_newer_schema(tmp_path):
    import sqlite3

    from caterva.errors import StateError

    store = Store.open(tmp_path)
    with pytest.raises(StateError, match="another publisher"):
        Store.open(tmp_path)
    store.close()
    with sqlite3.connect(tmp_path / "publisher.db") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StateError, match="newer"):
        Store.open(tmp_path)
    with sqlite3.connect(tmp_path / "publisher.db") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    Store.open(tmp_path).close()  # the refused open released its lock


def test_a_version_1_store_describes_every_file_again(root, tmp_path):
    import sqlite3

    make_array(root / "a.b2nd")
    store = Store.open(tmp_path)
    entry = catalog(root, tmp_path).scan().entries["a.b2nd"]
    store.save(entry)
    pub_id, _ = store.identity()
    store.close()
    with sqlite3.connect(tmp_path / "publisher.db") as db:
        db.execute("ALTER TABLE datasets DROP COLUMN etag")
        db.execute("PRAGMA user_version = 1")  # its digests are BLAKE2b
    store = Store.open(tmp_path)
    assert store.load() == {}
    assert store.identity() == (pub_id, False)
    store.close()


def test_a_version_2_store_keeps_its_descriptions(root, tmp_path):
    import sqlite3

    make_array(root / "a.b2nd")
    store = Store.open(tmp_path)
    entry = catalog(root, tmp_path).scan().entries["a.b2nd"]
    store.save(entry)
    store.close()
    with sqlite3.connect(tmp_path / "publisher.db") as db:  # as version 2 kept it
        db.execute("ALTER TABLE datasets DROP COLUMN etag")
        db.execute("UPDATE datasets SET info = ?", (entry.info.to_bytes().decode(),))
        db.execute("PRAGMA user_version = 2")
    store = Store.open(tmp_path)
    assert store.load() == {"a.b2nd": (entry.stamp, entry.text)}
    store.close()


def test_an_unreadable_state_row_is_dropped(root, tmp_path):
    import sqlite3

    for name in "abc":
        make_array(root / f"{name}.b2nd")
    store = Store.open(tmp_path)
    store.save_all(catalog(root, tmp_path).scan().entries.values())
    store.close()
    with sqlite3.connect(tmp_path / "publisher.db") as db:
        db.execute("UPDATE datasets SET etag = 'x' WHERE path = 'a.b2nd'")
        db.execute("UPDATE datasets SET info = 'not json' WHERE path = 'b.b2nd'")
        # entries read the etag from the end of the text: one that does not end with it
        text = """'{"etag":"' || etag || '","x":1}'"""
        db.execute(f"UPDATE datasets SET info = {text} WHERE path = 'c.b2nd'")
    store = Store.open(tmp_path)
    assert store.load() == {}  # all are described again and announced
    store.close()
