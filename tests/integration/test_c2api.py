"""The Caterva2 API of a real subscriber (caterva.subscriber.c2compat), read by the real,
unmodified clients: ``blosc2.C2Array`` / ``blosc2.open(URLPath)`` and ``caterva2.Client``.

    broker <- publisher of root "example" (root-example/ and two arrays for expressions)
           <- subscriber following it                    <- C2Array, caterva2.Client
"""

from __future__ import annotations

import shutil
import time

import blosc2
import caterva2
import httpx
import numpy as np
import pytest

from caterva.client import Client
from caterva.protocol import selection
from caterva.protocol.metadata import chunk_digest
from tests.conftest import EXAMPLE, Services, free_port
from tests.integration.test_subscriber_examples import ORIGINALS

A = np.linspace(0, 1, 120 * 90, dtype=np.float64).reshape(120, 90)
B = np.arange(120 * 90, dtype=np.float64).reshape(120, 90) % 17
ARRAYS = {p: a for p, a in ORIGINALS.items() if p.endswith(".b2nd")}


@pytest.fixture(scope="module")
def sub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("c2api")
    data = tmp / "example"
    shutil.copytree(EXAMPLE, data, ignore=shutil.ignore_patterns("big", "__pycache__", ".*"))
    (data / "lazy").mkdir()
    # two operands of one shape, chunked differently; and one read by one test only
    blosc2.asarray(A, urlpath=str(data / "lazy/a.b2nd"), mode="w", chunks=(40, 30))
    blosc2.asarray(B, urlpath=str(data / "lazy/b.b2nd"), mode="w", chunks=(25, 45))
    blosc2.asarray(B, urlpath=str(data / "lazy/counted.b2nd"), mode="w", chunks=(20, 20))
    services = Services(tmp)
    broker = services.start("bro", "--port", str(free_port()), "--statedir", str(tmp / "b")).url
    common = ("--broker", broker, "--http", "127.0.0.1:0", "--statedir")
    services.start("pub", "example", str(data), *common, str(tmp / "pub"))
    url = services.start("sub", *common, str(tmp / "sub")).url
    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(500):  # the announcement arrives asynchronously after start
            if http.put("/v1/roots/example/follow").status_code == 200:
                break
            time.sleep(0.02)
        yield url
    services.close()


def keys_for(shape: tuple[int, ...]) -> list:
    """The selections blosc2 can send for ``shape``: boxes, ints, coordinates, masks."""
    keys: list = [(), Ellipsis]
    if not shape:
        return keys
    n = shape[0]
    keys += [
        0,
        -1,
        slice(1, 3),
        slice(0, n + 5),
        slice(n // 2, None),
        tuple(slice(1, max(s - 1, 1)) for s in shape),
        (n // 2, Ellipsis),
        [0, n - 1, 1, 1],
        np.arange(n) % 3 == 0,
    ]
    if len(shape) > 1:
        keys += [
            (slice(None), -1),
            ([0, n - 1], [shape[1] - 1, 0]),  # points
            (slice(1, 2), [0, shape[1] - 1]),
        ]
    return keys


@pytest.mark.parametrize("path", sorted(ARRAYS))
def test_c2array_selections_equal_numpy(sub, path):
    original = ARRAYS[path]
    remote = blosc2.C2Array(f"example/{path}", urlbase=sub)
    assert remote.shape == original.shape and remote.dtype == original.dtype
    for key in keys_for(original.shape):
        got = np.asarray(remote[key])
        expected = np.array(original[key], dtype=original.dtype)  # a scalar keeps the dtype
        assert got.dtype == expected.dtype and got.shape == expected.shape, (path, key)
        assert np.array_equal(got, expected), (path, key)


def test_blosc2_open_url_path(sub):
    remote = blosc2.open(blosc2.URLPath("example/images/terrain.b2nd", urlbase=sub))
    assert isinstance(remote, blosc2.C2Array)
    assert np.array_equal(remote[10:20, 5:300], ARRAYS["images/terrain.b2nd"][10:20, 5:300])
    assert remote.chunks == (100, 128) and remote.cparams.codec == blosc2.Codec.ZSTD


def test_a_lazy_expression_over_two_c2arrays_equals_numpy(sub):
    a = blosc2.C2Array("example/lazy/a.b2nd", urlbase=sub)
    b = blosc2.C2Array("example/lazy/b.b2nd", urlbase=sub)
    expr = blosc2.lazyexpr("a * 2 + b", {"a": a, "b": b})
    assert np.allclose(expr[:], A * 2 + B)
    assert np.allclose(expr[5:50, 7], (A * 2 + B)[5:50, 7])
    assert np.isclose(blosc2.sum(b), B.sum())


def test_upstream_fetches_are_the_chunks_a_slice_touches(sub):
    remote = blosc2.C2Array("example/lazy/counted.b2nd", urlbase=sub)
    key = (slice(10, 45), slice(30, 70))
    touched = selection.touched_chunks(selection.normalize(key, B.shape), [20, 20], [6, 5])
    before = httpx.get(f"{sub}/v1/stats").json()
    assert np.array_equal(remote[key], B[key])
    after = httpx.get(f"{sub}/v1/stats").json()
    assert after["misses"] - before["misses"] == len(touched) == 9
    # read again: from the cache, nothing upstream
    remote[key]
    assert httpx.get(f"{sub}/v1/stats").json()["misses"] == after["misses"]
    # coordinates: only the chunks holding them
    remote[[0, 119], [0, 89]]
    assert httpx.get(f"{sub}/v1/stats").json()["misses"] == after["misses"] + 2
    # a raw chunk, exactly as stored (its digest is the publisher's)
    digests = httpx.get(f"{sub}/v1/roots/example/info/lazy/counted.b2nd").json()["digests"]
    assert chunk_digest(remote.get_chunk(3)) == digests[3]


def test_caterva2_client_lists_reads_and_downloads(sub, tmp_path):
    client = caterva2.Client(sub)
    assert "example" in client.get_roots()
    listing = client.get_list("example")
    assert set(ORIGINALS) <= set(listing) and listing == sorted(listing)
    assert client.get_list("example/ocean") == ["2024/salinity.b2nd"]
    info = client.get_info("example/climate/2024/temperature.b2nd")
    assert info["shape"] == [24, 40, 60] and info["chunks"] == [10, 16, 25]
    ds = client.get("example/climate/2024/temperature.b2nd")
    expected = ARRAYS["climate/2024/temperature.b2nd"]
    assert np.array_equal(ds[2:5, 10:30, 7], expected[2:5, 10:30, 7])
    assert np.array_equal(
        client.fetch("example/stations/observations.b2nd", slice(5, 9)),
        ARRAYS["stations/observations.b2nd"][5:9],
    )
    assert isinstance(client.get("example/README.md"), caterva2.client.File)
    ours = Client(sub)
    (tmp_path / "cat").mkdir()
    for path in ("README.md", "images/terrain.b2nd", "signals/vibration.b2frame"):
        theirs = client.download(f"example/{path}", tmp_path / "c2" / path.replace("/", "_"))
        mine = ours.download(f"example/{path}", tmp_path / "cat" / path.replace("/", "_"))
        assert theirs.read_bytes() == mine.read_bytes(), path


def test_writes_answer_not_supported(sub):
    for method, path in [
        ("post", "/api/upload/example/new.b2nd"),
        ("post", "/api/remove/example/README.md"),
        ("post", "/api/chunk/example/lazy/a.b2nd"),
        ("post", "/api/upload_lazyarr/example/expr.b2nd"),
        ("delete", "/api/info/example/README.md"),
    ]:
        r = httpx.request(method, f"{sub}{path}")
        assert r.status_code == 501 and r.json()["error"]["code"] == "not_supported", path
    with pytest.raises(httpx.HTTPStatusError, match="501"):
        caterva2.Client(sub).remove("example/README.md")
