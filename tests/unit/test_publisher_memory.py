"""What a publisher's first scan leaves alive: its descriptions as text, not the work of making
them. Handing 100,000 files to the thread pool at once kept 100,000 futures alive among the
descriptions made meanwhile, and the fragmented heap kept ~190 MiB more than a restart."""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import os
import sys
import tracemalloc
from concurrent.futures import Future

import blosc2

from caterva.protocol.metadata import DatasetInfo, manifest_etag
from caterva.protocol.rootetag import RootEtag
from caterva.publisher import catalog as catalog_module
from caterva.publisher.catalog import Catalog
from caterva.publisher.store import stamp
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


def scanned(tmp_path, n: int) -> tuple[Catalog, float, float]:
    """A first scan of ``n`` tiny files: the catalog, the bytes it keeps beside its
    descriptions' texts, and the bytes alive at the scan's peak beyond what it keeps."""
    root = tmp_path / f"root{n}"
    build_root(root, n)
    catalog = Catalog("big", root, tmp_path / f"state{n}" / "frames")
    gc.collect()
    tracemalloc.start()
    try:
        result = catalog.scan()
        peak = tracemalloc.get_traced_memory()[1]
        del result
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    texts = sum(sys.getsizeof(e.text) for e in catalog.manifest._entries)
    return catalog, kept - texts, peak - kept


def test_a_catalog_keeps_little_per_dataset_beside_its_description(tmp_path):
    """At 100,000 datasets every byte per entry is 0.1 MB of the publisher's memory. Beside its
    description's text, an entry kept its file's full name (the root's name and its path
    again), its stat key as a tuple of three ints (~170 bytes) and its etag, which the text
    ends with (~80 bytes); a first scan's working sets (files found, files to describe, their
    descriptions, copies of the path sets) were all alive at its end. Per file, measured
    between two sizes (what does not grow with the root cancels out): ~580 bytes kept beside
    the text and ~470 more at the peak, then (now ~245 and ~330)."""
    small, large = catalog_module.BATCH, 4 * catalog_module.BATCH
    _, kept_small, extra_small = scanned(tmp_path, small)
    catalog, kept_large, extra_large = scanned(tmp_path, large)
    kept = (kept_large - kept_small) / (large - small)
    extra = (extra_large - extra_small) / (large - small)
    assert kept < 300, kept  # entry, path, stamp, the catalog's dict and list, versions
    assert extra < 400, extra
    entry = catalog.get("d000/t00000.b2nd")
    assert entry.source == str((tmp_path / f"root{large}" / entry.path).resolve())
    assert entry.unchanged() and entry.stat.size == os.stat(entry.source).st_size


def test_the_manifest_is_served_without_its_whole_plain_body_in_memory(tmp_path):
    """100,000 datasets make a 49 MB manifest: joining it whole (three copies on the way) and
    keeping it took the publisher from 241 to a 373 MiB peak. The plain form is made as it is
    sent, the gzipped one from the same pieces; only the gzipped one is kept."""
    pad = "x" * 400
    known = {
        f"d/t{i:05d}.b2nd": (stamp(1, 1, i), json.dumps({"pad": pad, "etag": f"{i:032x}"}))
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
