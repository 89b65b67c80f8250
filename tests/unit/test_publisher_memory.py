"""What a publisher's first scan leaves alive: its descriptions as text, not the work of making
them. Handing 100,000 files to the thread pool at once kept 100,000 futures alive among the
descriptions made meanwhile, and the fragmented heap kept ~190 MiB more than a restart."""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import tracemalloc
from concurrent.futures import Future

import blosc2

from caterva.protocol.metadata import DatasetInfo, manifest_etag
from caterva.protocol.rootetag import RootEtag
from caterva.publisher import catalog as catalog_module
from caterva.publisher.catalog import Catalog
from caterva.publisher.store import StatKey
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


def test_the_manifest_is_served_without_its_whole_plain_body_in_memory(tmp_path):
    """100,000 datasets make a 49 MB manifest: joining it whole (three copies on the way) and
    keeping it took the publisher from 241 to a 373 MiB peak. The plain form is made as it is
    sent, the gzipped one from the same pieces; only the gzipped one is kept."""
    pad = "x" * 400
    known = {
        f"d/t{i:05d}.b2nd": (StatKey(1, 1, i), f"{i:032x}", json.dumps({"path": i, "pad": pad}))
        for i in range(20_000)
    }
    catalog = Catalog("big", tmp_path / "root", tmp_path / "state" / "frames", known=known)
    whole = 20_000 * 400
    tracemalloc.start()
    try:
        etag, pieces = catalog.manifest_body(gzip=False)
        plain = hashlib.sha256()
        for piece in pieces:
            plain.update(piece)
        plain_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        zipped = catalog.manifest_body(gzip=True)[1]
        gzip_peak = tracemalloc.get_traced_memory()[1] - len(zipped)
    finally:
        tracemalloc.stop()
    assert plain_peak < whole / 4 and gzip_peak < whole / 4, (plain_peak, gzip_peak)
    assert hashlib.sha256(gzip.decompress(zipped)).digest() == plain.digest()
    body = json.loads(gzip.decompress(zipped))
    assert body["etag"] == etag and len(body["datasets"]) == len(known)
    assert catalog.manifest_body(gzip=True)[1] is zipped  # made once per version
