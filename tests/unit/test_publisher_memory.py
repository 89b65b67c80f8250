"""What a publisher's first scan leaves alive: its descriptions as text, not the work of making
them. Handing 100,000 files to the thread pool at once kept 100,000 futures alive among the
descriptions made meanwhile, and the fragmented heap kept ~190 MiB more than a restart."""

from __future__ import annotations

import gc
from concurrent.futures import Future

import blosc2

from caterva.protocol.metadata import DatasetInfo, manifest_etag
from caterva.protocol.rootetag import RootEtag
from caterva.publisher import catalog as catalog_module
from caterva.publisher.catalog import Catalog
from tests.integration.test_publisher_scale import build_root


def alive(kind: type) -> int:
    return sum(isinstance(o, kind) for o in gc.get_objects())


def test_a_first_scan_describes_a_batch_at_a_time_and_keeps_only_texts(tmp_path, monkeypatch):
    root = tmp_path / "root"
    paths = build_root(root, 4 * catalog_module.BATCH)
    opened, futures = [], []  # futures alive, looked at every 100 files opened
    real_open = blosc2.open

    def open_counting(path, *args, **kwargs):
        opened.append(path)
        if len(opened) % 100 == 1:
            futures.append(alive(Future))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(catalog_module.blosc2, "open", open_counting)
    catalog = Catalog("big", root, tmp_path / "state" / "frames")
    gc.collect()
    infos, indexes = alive(DatasetInfo), alive(RootEtag)  # what other tests left
    result = catalog.scan()
    assert catalog.described == len(paths) == len(result.diffs) == len(opened)
    assert 0 < max(futures) <= catalog_module.BATCH, futures
    del result
    gc.collect()
    assert alive(DatasetInfo) == infos  # entries hold the text (a restart reads it as stored)
    # the manifest etag is hashed whole; its index is made at the first change, as on a restart
    assert alive(RootEtag) == indexes
    etags = ((info.path, info.etag) for info in catalog.manifest)
    assert catalog.manifest.etag == manifest_etag("big", etags)
