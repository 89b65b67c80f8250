"""GET .../file on a subscriber streams the file as it is made (issue 13, finding 9): a file
many times the cache budget downloads whole, and nothing is written outside the cache while it
does (it used to be built whole in <statedir>/tmp first). Ranges are served from the same
stream, fetching only the chunks they cover."""

from __future__ import annotations

import os

import blosc2
import httpx
import numpy as np
import pytest

from caterva.protocol.layout import FileWriter
from caterva.protocol.metadata import DatasetInfo
from tests.conftest import free_port
from tests.integration.test_subscriber import Stack, next_event

BUDGET = 2 << 20  # noise.b2nd is 16 MiB of incompressible chunks: eight budgets


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from tests.conftest import Services

    tmp = tmp_path_factory.mktemp("sub-file")
    services = Services(tmp)
    try:
        broker = services.start(
            "bro", "--port", str(free_port()), "--statedir", str(tmp / "broker")
        ).url
        stack = Stack(services.start, tmp, broker, cache_size=str(BUDGET))
        stack.follow()
        events = stack.events()
        # a plain file bigger than the budget too (the publisher serves it as chunks)
        blob = np.random.default_rng(3).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
        (stack.data / "docs" / ".blob.bin.tmp").write_bytes(blob)
        os.replace(stack.data / "docs" / ".blob.bin.tmp", stack.data / "docs" / "blob.bin")
        next_event(events, "create", path="docs/blob.bin", timeout=20)
        stack.blob = blob
        yield stack
    finally:
        services.close()


def outside_the_cache(statedir) -> int:
    """Bytes in files of the subscriber's state directory but the cache's chunks and its index."""
    total = 0
    for folder, _, files in os.walk(statedir):
        if os.path.relpath(folder, statedir).split(os.sep)[0] == "chunks":
            continue
        total += sum(
            os.path.getsize(os.path.join(folder, f)) for f in files if not f.startswith("state.db")
        )
    return total


def as_the_source_stores_it(stack, path: str) -> bytes:
    """The Blosc2 file a client download makes of ``path`` (FileWriter), from the publisher."""
    info = DatasetInfo.from_dict(httpx.get(f"{stack.pub.url}/v1/roots/demo/info/{path}").json())
    chunks = [
        httpx.get(f"{stack.pub.url}/v1/roots/demo/chunk/{i}/{path}").content
        for i in range(info.nchunks)
    ]
    out = stack.tmp / f"expected-{os.path.basename(path)}"
    with FileWriter(info, out) as writer:
        for raw in chunks:
            writer.add(raw)
    return out.read_bytes()


@pytest.mark.parametrize("path", ["noise.b2nd", "docs/blob.bin"])
def test_a_file_bigger_than_the_budget_streams_without_temporary_files(stack, path):
    statedir = stack.tmp / "substate"
    got = bytearray()
    with stack.http.stream("GET", f"/roots/demo/file/{path}") as r:
        assert r.status_code == 200
        size = int(r.headers["content-length"])
        for piece in r.iter_bytes():
            got += piece
            assert outside_the_cache(statedir) == 0, "the file is being built on disk"
    assert len(got) == size
    assert stack.http.get("/stats").json()["used"] <= BUDGET
    if path == "noise.b2nd":
        assert bytes(got) == as_the_source_stores_it(stack, path)
        assert np.array_equal(blosc2.ndarray_from_cframe(bytes(got))[:], stack.arrays["noise"])
    else:
        assert bytes(got) == stack.blob


@pytest.mark.parametrize("path", ["noise.b2nd", "docs/blob.bin", "grid.b2nd"])
def test_ranges_are_slices_of_the_whole(stack, path):
    whole = stack.http.get(f"/roots/demo/file/{path}")
    assert whole.status_code == 200
    data, size = whole.content, len(whole.content)
    etag = whole.headers["etag"]
    assert whole.headers["accept-ranges"] == "bytes"
    for spec, start, stop in [
        ("0-99", 0, 100),
        ("100-", 100, size),
        ("-1000", size - 1000, size),
        (f"{size // 2}-{size // 2 + 300_000}", size // 2, min(size, size // 2 + 300_001)),
        (f"{size - 5}-{size + 99}", size - 5, size),
    ]:
        r = stack.http.get(f"/roots/demo/file/{path}", headers={"Range": f"bytes={spec}"})
        assert r.status_code == 206, (spec, r.text)
        assert r.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}"
        assert r.content == data[start:stop], spec
    # If-Range: the range when the ETag is current, else the whole file
    r = stack.http.get(f"/roots/demo/file/{path}", headers={"Range": "bytes=5-9", "If-Range": etag})
    assert (r.status_code, r.content) == (206, data[5:10])
    r = stack.http.get(
        f"/roots/demo/file/{path}", headers={"Range": "bytes=5-9", "If-Range": '"old"'}
    )
    assert (r.status_code, r.content) == (200, data)
    # several ranges: the whole file (a server may ignore Range)
    r = stack.http.get(f"/roots/demo/file/{path}", headers={"Range": "bytes=0-1,5-6"})
    assert (r.status_code, r.content) == (200, data)
    r = stack.http.get(f"/roots/demo/file/{path}", headers={"Range": f"bytes={size}-"})
    assert (r.status_code, r.json()["error"]["code"]) == (416, "range_not_satisfiable")
    assert r.headers["content-range"] == f"bytes */{size}"
    for bad in ("bytes=9-5", "lines=0-1", "bytes=x-y", "bytes="):
        r = stack.http.get(f"/roots/demo/file/{path}", headers={"Range": bad})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_request"), bad


def test_a_dataset_with_chunks_of_zeros_downloads_cold_and_warm_and_opens(stack, tmp_path):
    """Chunks of zeros are kept by blosc2 as their header alone, in the frame's index: both
    the client's chunk path (cold) and a download of the fully cached dataset (warm: the
    subscriber's /file refuses, the client frames it) must write a file blosc2 opens."""
    from caterva.client import Client

    events = stack.events()
    zeros = blosc2.zeros((6, 400), np.float64, chunks=(1, 400), blocks=(1, 100))
    zeros[2] = np.arange(400.0)  # one chunk with bytes among them
    zeros.save(str(stack.data / ".sparse.tmp.b2nd"))
    os.replace(stack.data / ".sparse.tmp.b2nd", stack.data / "sparse.b2nd")
    next_event(events, "create", path="sparse.b2nd", timeout=20)
    with Client(stack.sub.url) as client:
        for run in ("cold", "warm"):
            out = client.download("demo/sparse.b2nd", tmp_path / f"{run}.b2nd")
            assert np.array_equal(blosc2.open(str(out), mode="r")[:], zeros[:]), run
    refused = httpx.get(f"{stack.sub.url}/v1/roots/demo/file/sparse.b2nd")
    assert refused.status_code == 501 and refused.json()["error"]["code"] == "not_supported"
