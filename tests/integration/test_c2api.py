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
from tests.integration.authkit import (
    GRID,
    PASSWORD,
    bearer,
    login,
    make_users,
    tiny_root,
    wait_root,
)
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
    with Client(sub) as ours:  # a folder lists as caterva's own listing of it does
        folder = [d["path"].removeprefix("ocean/") for d in ours.datasets("example", "ocean/")]
    assert "2024/salinity.b2nd" in folder and client.get_list("example/ocean") == folder
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


def test_writes_answer_not_supported_or_method_not_allowed(sub):
    for path in ("upload/example/new.b2nd", "remove/example/README.md", "move/", "adduser/"):
        r = httpx.post(f"{sub}/api/{path}")
        assert r.status_code == 501 and r.json()["error"]["code"] == "not_supported", path
    with pytest.raises(httpx.HTTPStatusError, match="501"):
        caterva2.Client(sub).remove("example/README.md")
    # other methods on the read paths: 405 and what is allowed there
    for method, path, allowed in [
        ("post", "/api/chunk/example/lazy/a.b2nd", "GET"),
        ("delete", "/api/info/example/README.md", "GET"),
        ("put", "/api/fetch/example/lazy/a.b2nd", "GET, POST"),
    ]:
        r = httpx.request(method, f"{sub}{path}")
        assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed"), path
        assert r.headers["allow"] == allowed
    remote = blosc2.C2Array("example/lazy/a.b2nd", urlbase=sub)
    with pytest.raises(httpx.HTTPStatusError, match="405"):
        remote.update_chunk(0, remote.get_chunk(0))


# --- with --auth ----------------------------------------------------------------------------------

ADMIN, ADA = "admin@lab.org", "ada@lab.org"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A subscriber with accounts following roots "demo" and "other"; ada may read demo."""
    tmp = tmp_path_factory.mktemp("c2auth")
    users = make_users(tmp / "users.db", {ADMIN: ["demo", "other"], ADA: ["demo"]})
    services = Services(tmp)
    broker = services.start("bro", "--port", "0", "--statedir", str(tmp / "bro")).url
    common = ("--broker", broker, "--http", "127.0.0.1:0", "--statedir")
    for name in ("demo", "other"):
        services.start("pub", name, str(tiny_root(tmp / name)), *common, str(tmp / f"p-{name}"))
    url = services.start("sub", *common, str(tmp / "sub"), "--users", str(users)).url
    admin = bearer(login(url, ADMIN))
    for name in ("demo", "other"):
        wait_root(url, name, headers=admin)
        assert httpx.put(f"{url}/v1/roots/{name}/follow", headers=admin).status_code == 200
    yield url
    services.close()


def test_logins_of_the_caterva2_clients_see_only_granted_roots(secured):
    anonymous = httpx.get(f"{secured}/api/roots")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthorized"
    client = caterva2.Client(secured, auth=(ADA, PASSWORD))
    assert client.get_roots() == {"demo": {"name": "demo"}}
    assert np.array_equal(client.fetch("demo/grid.b2nd", (slice(2, 5), 7)), GRID[2:5, 7])
    for ungranted in ("other/grid.b2nd", "other"):
        with pytest.raises(httpx.HTTPStatusError, match="403"):
            client.get_list(ungranted)
    with blosc2.c2context(urlbase=secured, username=ADA, password=PASSWORD):
        assert np.array_equal(blosc2.C2Array("demo/grid.b2nd")[3:9], GRID[3:9])
        with pytest.raises(httpx.HTTPStatusError, match="403"):
            blosc2.C2Array("other/grid.b2nd")
    # the cookie is a caterva token: it opens /api/ paths only, and a bearer token works too
    cookie = client.cookie
    assert cookie.startswith("caterva_token=")
    headers = {"Cookie": cookie}
    assert httpx.get(f"{secured}/v1/roots", headers=headers).status_code == 401
    token = cookie.split("=", 1)[1]
    remote = blosc2.C2Array("demo/grid.b2nd", urlbase=secured, auth_token=cookie)
    assert np.array_equal(remote[0], GRID[0])
    r = httpx.get(f"{secured}/api/info/demo/grid.b2nd", headers=bearer(token))
    assert r.status_code == 200 and r.json()["shape"] == [30, 40]
    bad = httpx.post(f"{secured}/auth/jwt/login", data={"username": ADA, "password": "no"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "bad_credentials"


# --- caterva's own Dataset as a blosc2 operand ----------------------------------------------------


def test_a_caterva_dataset_is_a_blosc2_proxy_source_and_operand(sub):
    with Client(sub) as client:
        a, b = client.dataset("example/lazy/a.b2nd"), client.dataset("example/lazy/b.b2nd")
        proxy = blosc2.Proxy(a)
        before = httpx.get(f"{sub}/v1/stats").json()
        assert np.array_equal(proxy[0:10, 0:20], A[0:10, 0:20])  # chunk 0 of 3 x 3
        after = httpx.get(f"{sub}/v1/stats").json()
        asked = after["hits"] + after["misses"] - before["hits"] - before["misses"]
        assert asked == 1
        assert np.allclose((proxy * 2 + 1)[:], A * 2 + 1)
        assert np.isclose(blosc2.sum(proxy), A.sum())
        # a Dataset is an operand of an expression as it is: read a chunk's slice at a time
        expr = blosc2.lazyexpr("a * 2 + b", {"a": a, "b": b})
        assert np.allclose(expr[:], A * 2 + B)
        assert np.allclose(blosc2.lazyexpr("x + 1", {"x": a})[0:10], A[0:10] + 1)
        raw = blosc2.decompress(a.get_chunk(4))
        assert len(raw) == a.info.chunksize
