"""A restarted publisher reuses what its state store says about unchanged files: it opens none
of them again (a root of a few thousand files, the CI-sized stand-in for 100,000)."""

from __future__ import annotations

import blosc2

from caterva.protocol.metadata import DatasetInfo
from caterva.publisher import catalog as catalog_module
from caterva.publisher.catalog import Catalog
from caterva.publisher.store import Store
from tests.integration.test_publisher_scale import build_root


def test_a_restart_opens_no_unchanged_file(tmp_path, monkeypatch):
    root = tmp_path / "root"
    paths = build_root(root, 3000)
    state = tmp_path / "state"
    state.mkdir()
    store = Store.open(state)
    first = Catalog("big", root, state / "frames")
    result = first.scan()
    assert first.described == len(paths) == len(result.diffs)
    store.save_all(result.entries.values())
    store.close()

    opened = []
    real_open = blosc2.open
    monkeypatch.setattr(
        catalog_module.blosc2,
        "open",
        lambda path, *a, **kw: opened.append(path) or real_open(path, *a, **kw),
    )
    decoded = []  # stored descriptions are reused as text, not parsed (100,000: 4 s)
    real_decode = DatasetInfo.from_dict
    monkeypatch.setattr(
        DatasetInfo, "from_dict", lambda body: decoded.append(1) or real_decode(body)
    )
    store = Store.open(state)
    again = Catalog("big", root, state / "frames", known=store.load())
    store.close()
    assert again.scan().diffs == [] and again.described == 0 and opened == []
    assert again.manifest.etag == first.manifest.etag
    assert b"".join(again.manifest_body()[1]) == b"".join(first.manifest_body()[1])
    assert decoded == []

    (root / paths[7]).write_bytes((root / paths[8]).read_bytes() + b"")  # touched: same bytes
    (root / paths[9]).unlink()
    result = again.scan()
    assert [(d.op, d.path) for d in result.diffs] == [("delete", paths[9])]
    assert opened == [str(root / paths[7])]  # only the file whose stat changed
