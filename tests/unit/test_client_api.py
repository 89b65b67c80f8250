"""The Python client against an in-memory fake subscriber (httpx.MockTransport, no sockets):
selections, field views, error mapping, downloads with verification and progress, events,
and the same behaviour from Client and AsyncClient."""

from __future__ import annotations

import asyncio
import io
import json
from urllib.parse import unquote

import blosc2
import httpx
import numpy as np
import pytest

import caterva
from caterva.client import AsyncClient, Client
from caterva.client.calls import Printed
from caterva.errors import (
    BadRequest,
    BadSelection,
    DigestMismatch,
    NotFollowed,
    NotSupported,
    ProtocolError,
    SourceOffline,
    Unavailable,
    UnknownDataset,
    UnknownRoot,
)
from caterva.protocol import printing, rest, selection
from caterva.protocol.dtypes import dtype_to_json
from caterva.protocol.gather import read_selection
from caterva.protocol.layout import describe
from caterva.protocol.metadata import Manifest

URL = "http://sub.test"
REC = np.dtype([("id", "<i2"), ("t", "<f8"), ("pos", "<f4", (2,))])


def make_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    rec = np.zeros(23, REC)
    rec["id"] = np.arange(23)
    rec["t"] = rng.normal(size=23)
    rec["pos"] = rng.normal(size=(23, 2))
    return {
        "grid/a.b2nd": (rng.normal(size=(13, 17)), dict(chunks=(5, 6), blocks=(2, 3))),
        "rec.b2nd": (rec, dict(chunks=(7,), blocks=(3,))),
        "one.b2nd": (np.arange(50, dtype=np.int32), dict(chunks=(8,), blocks=(4,))),
        "zero.b2nd": (np.array(2.5), dict(chunks=(), blocks=())),
    }


PLAIN = bytes(range(256)) * 20 + b"tail"


class FakeSubscriber:
    """Enough of caterva/subscriber/api.py to exercise the client, over MockTransport."""

    def __init__(self) -> None:
        self.originals: dict[str, np.ndarray] = {}
        self.containers = {}
        self.infos = {}
        self.keep = []
        for path, (array, layout) in make_arrays().items():
            nd = blosc2.asarray(array, **layout)
            nd.schunk.vlmeta["units"] = "m"
            self.originals[path] = array
            self.keep.append(nd)  # the schunk lives only as long as its NDArray
            self.containers[path] = nd.schunk
            self.infos[path] = describe(nd, path, "b2nd", size=0, mtime=0.0)
        plain = blosc2.SChunk(chunksize=1000, data=PLAIN, cparams={"typesize": 1})
        self.containers["notes.txt"] = plain
        self.infos["notes.txt"] = describe(plain, "notes.txt", "file", size=len(PLAIN), mtime=0)
        self.followed = {"r"}
        self.requests: list[httpx.Request] = []
        self.events: list[dict] = [
            {"root": "r", "event": "update", "time": 1.0, "path": "one.b2nd"}
        ]
        self.fail: Exception | None = None  # raised by the transport, once
        self.tamper: int | None = None  # chunk index sent with the wrong digest
        self.garble: dict[int, bytes] = {}  # chunk index -> bytes sent instead of the chunk
        self.extra: list[int] = []  # chunks sent after those asked for
        self.cut: int | None = None  # chunk streams end early, with a read error
        self.printed: object = None  # the answer of every /printed request, when set
        self.decline = False  # /printed answers 501 not_supported

    def error(self, exc) -> httpx.Response:
        return httpx.Response(exc.status, json=exc.to_payload())

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        try:
            return self.route(request)
        except caterva.CatervaError as exc:
            return self.error(exc)

    def route(self, request: httpx.Request) -> httpx.Response:
        parts = unquote(request.url.path).split("/")[2:]  # drop "", "v1"
        q = request.url.params
        if parts == ["roots"]:
            return httpx.Response(
                200,
                json={
                    "roots": [
                        {
                            "root": "r",
                            "online": True,
                            "followed": "r" in self.followed,
                            "datasets": 5,
                            "source": "http://pub:1",
                            "origin": "p1",
                            "hops": ["p1"],
                            "sources": [],
                        },
                        {
                            "root": "other",
                            "online": False,
                            "followed": False,
                            "datasets": 1,
                            "source": None,
                            "future_field": 1,
                        },
                    ]
                },
            )
        if parts == ["events"]:
            body = b"".join(json.dumps(e).encode() + b"\n\n" for e in self.events)
            return httpx.Response(200, content=body)
        root, what, rest_ = parts[1], parts[2], "/".join(parts[3:])
        if root not in ("r", "other"):
            raise UnknownRoot(f"unknown root {root!r}")
        if what == "follow":
            if request.method == "PUT":
                self.followed.add(root)
                return httpx.Response(200, json={"root": root, "followed": True, "datasets": 5})
            self.followed.discard(root)
            return httpx.Response(200, json={"root": root, "followed": False})
        if root not in self.followed:
            raise NotFollowed(f"root {root!r} is not followed: run `caterva follow {root}`")
        if what == "chunks" and request.method == "POST":  # many datasets in one stream
            wanted = json.loads(request.content)["datasets"]
            return httpx.Response(
                200, content=b"".join(self.frames(item["path"], item["i"]) for item in wanted)
            )
        if what == "manifest":
            return httpx.Response(200, content=Manifest(root, list(self.infos.values())).to_bytes())
        if rest_ not in self.infos:
            raise UnknownDataset(f"no dataset {rest_!r} in root {root!r}")
        info, schunk = self.infos[rest_], self.containers[rest_]
        if what == "info":
            return httpx.Response(
                200, json={**info.to_dict(), "cached": {"chunks": 2, "bytes": 99}}
            )
        if what == "data":
            key = selection.normalize(selection.parse(q.get("sel", "...")), info.shape)
            array = read_selection(info, key, schunk.get_chunk)
            if "field" in q:
                array = array[q["field"]]
            buf = io.BytesIO()
            np.save(buf, np.asarray(array, order="C"), allow_pickle=False)
            return httpx.Response(200, content=buf.getvalue())
        if what == "printed":
            if self.decline:
                raise NotSupported("too many values to print")
            if self.printed is not None:
                return httpx.Response(200, json=self.printed)
            value = self.originals[rest_]
            value = np.asarray(
                (value[q["field"]] if "field" in q else value)[selection.parse(q["sel"])]
            )
            text = printing.text(value, int(q["width"]))
            shape = list(value.shape)
            return httpx.Response(
                200, json={"dtype": dtype_to_json(value.dtype), "shape": shape, "text": text}
            )
        if what == "chunks":
            body = self.frames(rest_, q["i"])
            if self.cut is not None:  # the connection drops after this many bytes
                return httpx.Response(200, stream=CutStream(body[: self.cut]))
            return httpx.Response(200, content=body)
        raise AssertionError(f"unexpected request {request.url}")

    def frames(self, path: str, indices: str) -> bytes:
        if path not in self.infos:
            raise UnknownDataset(f"no dataset {path!r}")
        info, schunk = self.infos[path], self.containers[path]
        out = b""
        for i in rest.parse_indices(indices) + self.extra:
            raw = self.garble.get(i) or schunk.get_chunk(i)
            digest = info.digests[(i + 1) % info.nchunks] if i == self.tamper else info.digests[i]
            out += rest.frame_header(i, raw, digest) + raw
        return out


class CutStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that breaks off after ``data``, as a dropped connection does."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self):
        yield self.data
        raise httpx.ReadError("connection reset")

    async def __aiter__(self):
        yield self.data
        raise httpx.ReadError("connection reset")


@pytest.fixture
def fake() -> FakeSubscriber:
    return FakeSubscriber()


@pytest.fixture(params=["chunks", "npy"])
def client(fake, request):
    """Every test runs against both ways of reading a selection: the same values either way."""
    with Client(URL, transport=httpx.MockTransport(fake), selections=request.param) as c:
        yield c


def run_async(fake, body):
    """body(AsyncClient) in a fresh event loop."""

    async def main():
        async with AsyncClient(URL, transport=httpx.MockTransport(fake)) as c:
            return await body(c)

    return asyncio.run(main())


# --- roots and metadata ---------------------------------------------------------------------


def test_roots_follow_unfollow_list(client, fake):
    roots = client.roots()
    assert [(r.name, r.online, r.followed) for r in roots] == [
        ("r", True, True),
        ("other", False, False),
    ]
    assert roots[0].to_dict()["source"] == "http://pub:1"
    client.unfollow("r")
    assert fake.followed == set()
    with pytest.raises(NotFollowed, match="caterva follow r"):
        client.list("r")
    assert client.follow("r") == 5
    assert [d.path for d in client.list("r")] == sorted(fake.infos)


def test_dataset_metadata(client, fake):
    ds = client.dataset("r/grid/a.b2nd")
    assert (ds.shape, ds.dtype, ds.chunks, ds.blocks) == ((13, 17), np.dtype("f8"), (5, 6), (2, 3))
    assert (ds.nchunks, ds.kind, ds.ndim, len(ds)) == (9, "b2nd", 2, 13)
    assert ds.vlmeta == {"units": "m"}
    assert ds.info == fake.infos["grid/a.b2nd"] and client.info("r/grid/a.b2nd") == ds.info
    assert (ds.cached.chunks, ds.cached.bytes) == (2, 99)
    assert ds.address == "r/grid/a.b2nd" and "r/grid/a.b2nd" in repr(ds)


@pytest.mark.parametrize(
    "address, error",
    [
        ("nope/x.b2nd", UnknownRoot),
        ("r/missing.b2nd", UnknownDataset),
        ("r", BadRequest),
        ("bad root/x", caterva.CatervaError),
        ("r/../x", caterva.CatervaError),
    ],
)
def test_dataset_errors(client, address, error):
    with pytest.raises(error):
        client.dataset(address)


# --- selections -----------------------------------------------------------------------------

KEYS = [
    (slice(None),),
    (3,),
    (-1,),
    (slice(2, 11, 3), slice(None, None, -2)),
    (Ellipsis, -3),
    (slice(None, None, -1), 4),
    (np.int64(2), slice(-5, None)),
    (),
    (Ellipsis,),
    (0, 0),
    (slice(12, 3, -4), Ellipsis),
    (slice(5, 2),),
]


@pytest.mark.parametrize("key", KEYS, ids=[selection.format(k) or "()" for k in KEYS])
def test_selection_equals_numpy(client, fake, key):
    got = client.dataset("r/grid/a.b2nd")[key]
    want = fake.originals["grid/a.b2nd"][key]
    assert type(got) is type(want)  # a scalar where numpy gives a scalar
    np.testing.assert_array_equal(got, want)


def test_zero_d_and_one_d(client, fake):
    zero = client.dataset("r/zero.b2nd")
    assert zero[()] == 2.5 and isinstance(zero[()], np.float64)
    assert zero[...].shape == () and isinstance(zero[...], np.ndarray)
    one = client.dataset("r/one.b2nd")
    np.testing.assert_array_equal(one[::-7], fake.originals["one.b2nd"][::-7])
    np.testing.assert_array_equal(np.asarray(one), fake.originals["one.b2nd"])


def test_structured_fields(client, fake):
    original = fake.originals["rec.b2nd"]
    ds = client.dataset("r/rec.b2nd")
    assert ds.fields == ("id", "t", "pos")
    np.testing.assert_array_equal(ds[2:9], original[2:9])
    assert ds[4] == original[4]
    t = ds["t"]
    assert (t.shape, t.dtype, t.field) == ((23,), np.dtype("f8"), "t")
    np.testing.assert_array_equal(t[::-3], original["t"][::-3])
    pos = ds["pos"]  # a sub-array field adds its axis at the end, as in numpy
    assert (pos.shape, pos.dtype) == ((23, 2), np.dtype("f4"))
    np.testing.assert_array_equal(pos[3:8, -1], original["pos"][3:8, -1])
    assert pos[5, 1] == original["pos"][5, 1]
    np.testing.assert_array_equal(pos[...], original["pos"])
    if client.selections == "npy":  # the subscriber picks the field out
        assert all(r.url.params.get("field") in ("t", "pos") for r in fake.requests[-4:])
    else:  # only the chunks a selection touches travel
        assert all("/chunks/" in r.url.path for r in fake.requests[-4:])


@pytest.mark.parametrize(
    "key",
    [
        99,
        (0, 0, 0),
        slice(0, 5, 0),
        (Ellipsis, Ellipsis),
        1.5,
        None,
        True,
        [1, 2],
        np.array([1, 2]),
        "nofield",
    ],
)
def test_bad_selections_fail_before_any_request(client, fake, key):
    ds = client.dataset("r/grid/a.b2nd")
    sent = len(fake.requests)
    with pytest.raises(BadSelection):
        ds[key]
    assert len(fake.requests) == sent


def test_field_view_of_plain_dtype_is_refused(client):
    with pytest.raises(BadSelection, match="no field"):
        client.dataset("r/one.b2nd")["x"]


PRINTED = [
    ("r/grid/a.b2nd", None, (slice(1, 9, 3), slice(None, None, -5))),
    ("r/one.b2nd", None, (Ellipsis,)),
    ("r/rec.b2nd", None, (4,)),
    ("r/rec.b2nd", "pos", (slice(3, 8), -1)),  # the axis of a sub-array field too
    ("r/zero.b2nd", None, ()),
]


@pytest.mark.parametrize("address, field, key", PRINTED)
def test_a_selection_printed_by_the_subscriber(fake, address, field, key):
    """`caterva show`'s read: numpy's text of the selection, its dtype and shape, from one
    request that names the selection normalized, the field and the width."""
    with Client(URL, transport=httpx.MockTransport(fake), selections="npy") as client:
        ds = client.dataset(address)
        ds = ds[field] if field is not None else ds
        got = ds._printed(key, 60)
    original = fake.originals[address.removeprefix("r/")]
    value = np.asarray((original[field] if field is not None else original)[key])
    assert got == Printed(dtype_to_json(value.dtype), value.shape, printing.text(value, 60))
    asked = fake.requests[-1].url.params
    assert asked["sel"] == selection.format(key)
    assert (asked["width"], asked.get("field")) == ("60", field)


@pytest.mark.parametrize(
    "answer",
    [
        [],
        {"dtype": "<f8", "shape": [4]},
        {"dtype": "<f8", "shape": [4], "text": 5},
        {"dtype": 8, "shape": [4], "text": "[1 2 3 4]"},
        {"dtype": "<f8", "shape": 4, "text": "[1 2 3 4]"},
        {"dtype": "<f8", "shape": [4.0], "text": "[1 2 3 4]"},
        {"dtype": "<f8", "shape": [3], "text": "[1 2 3]"},  # not the shape asked for
    ],
)
def test_a_malformed_printed_answer_is_a_protocol_error(fake, answer):
    fake.printed = answer
    with Client(URL, transport=httpx.MockTransport(fake), selections="npy") as client:
        with pytest.raises(ProtocolError):
            client.dataset("r/one.b2nd")._printed((slice(0, 4),), 80)


def test_printing_declined_and_bad_keys(fake):
    with Client(URL, transport=httpx.MockTransport(fake), selections="npy") as client:
        ds = client.dataset("r/grid/a.b2nd")
        sent = len(fake.requests)
        with pytest.raises(BadSelection, match="too many indices"):
            ds._printed((0, 0, 0), 80)
        assert len(fake.requests) == sent  # refused before any request
        fake.decline = True
        with pytest.raises(NotSupported):
            ds._printed((Ellipsis,), 80)


def test_plain_file_reads_as_bytes(client):
    ds = client.dataset("r/notes.txt")
    assert ds.kind == "file" and ds.shape == (len(PLAIN),)
    assert ds[990:1010].tobytes() == PLAIN[990:1010]
    assert ds[-4:].tobytes() == b"tail"


# --- errors ---------------------------------------------------------------------------------


def test_unreachable_subscriber_is_unavailable(client, fake):
    """The library says what failed, not which command-line flag to change (the CLI adds
    that, knowing where the URL came from)."""
    fake.fail = httpx.ConnectError("refused")
    with pytest.raises(Unavailable) as info:
        client.roots()
    assert str(info.value) == f"cannot reach the subscriber at {client.url}"
    assert info.value.detail == {"unreachable": client.url}
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert isinstance(info.value, ConnectionError)


@pytest.mark.parametrize(
    "exc, error",
    [
        (httpx.ReadTimeout("slow"), Unavailable),
        (httpx.RemoteProtocolError("eof"), Unavailable),
        (httpx.DecodingError("zip"), ProtocolError),
    ],
)
def test_transport_errors_map_once(client, fake, exc, error):
    fake.fail = exc
    with pytest.raises(error) as info:
        client.roots()
    assert info.value.__cause__ is exc


def test_errors_travel_as_their_class(fake):
    def offline(request):
        return httpx.Response(
            503, json=SourceOffline("every source of root 'r' is offline").to_payload()
        )

    with Client(URL, transport=httpx.MockTransport(offline)) as c:
        with pytest.raises(SourceOffline, match="offline"):
            c.roots()

    def html(request):
        return httpx.Response(502, text="<html>bad gateway</html>")

    with Client(URL, transport=httpx.MockTransport(html)) as c:
        with pytest.raises(ProtocolError, match="502"):
            c.roots()


def test_invalid_url_is_a_bad_request():
    with pytest.raises(BadRequest, match="subscriber URL"):
        Client("ftp://x")
    with pytest.raises(BadRequest):
        Client("http://")


def test_default_url_comes_from_the_setting(monkeypatch):
    monkeypatch.setenv("CATERVA_SUB", "http://10.1.2.3:9999")
    with Client() as c:
        assert c.url == "http://10.1.2.3:9999"


def test_invalid_npy_is_a_protocol_error(fake):
    def garbage(request):
        if "/info/" in request.url.path:
            return fake(request)
        return httpx.Response(200, content=b"\x93NUMPY garbage")

    with Client(URL, transport=httpx.MockTransport(garbage), selections="npy") as c:
        ds = c.dataset("r/one.b2nd")
        with pytest.raises(ProtocolError, match=".npy"):
            ds[0:3]
    with Client(URL, transport=httpx.MockTransport(garbage)) as c:  # not chunk frames either
        ds = c.dataset("r/one.b2nd")
        with pytest.raises(ProtocolError, match="batch"):
            ds[0:3]


def replace_dataset(fake, path: str, array: np.ndarray, **layout) -> None:
    """The fake subscriber now holds a new version of ``path``."""
    nd = blosc2.asarray(array, **layout)
    fake.keep.append(nd)
    fake.originals[path], fake.containers[path] = array, nd.schunk
    fake.infos[path] = describe(nd, path, "b2nd", size=0, mtime=0.0)


def paths_of(fake) -> list[str]:
    return [r.url.path.split("/")[4] for r in fake.requests]  # info, chunks, data...


def test_chunk_reads_refresh_stale_info_once(fake):
    with Client(URL, transport=httpx.MockTransport(fake)) as c:
        ds = c.dataset("r/one.b2nd")
        new = np.arange(50, dtype=np.int32) * 3  # same layout, other values
        replace_dataset(fake, "one.b2nd", new, chunks=(8,), blocks=(4,))
        del fake.requests[:]
        np.testing.assert_array_equal(ds[5:20], new[5:20])
        assert paths_of(fake) == ["chunks", "info", "chunks"]
        assert ds.info == fake.infos["one.b2nd"]  # later reads need no refresh
        del fake.requests[:]
        assert ds[7] == new[7] and paths_of(fake) == ["chunks"]


def test_chunk_reads_of_a_changed_layout_or_a_bad_digest_fail(fake):
    with Client(URL, transport=httpx.MockTransport(fake)) as c:
        ds = c.dataset("r/one.b2nd")
        fake.tamper = 2  # chunk 2 always arrives with another chunk's digest
        with pytest.raises(DigestMismatch, match="changed while being read"):
            ds[0:50]
        fake.tamper = None
        bigger = np.arange(60, dtype=np.int32) * 2
        replace_dataset(fake, "one.b2nd", bigger, chunks=(8,), blocks=(4,))
        with pytest.raises(DigestMismatch, match="changed shape or layout"):
            ds[0:5]


@pytest.mark.parametrize("how", ["sync", "async"])
@pytest.mark.parametrize(
    "bad",
    [
        b"\xff" * 40,  # not a chunk
        b"\x01" * 5,  # shorter than a chunk header
        blosc2.compress2(bytes(10_000), typesize=4),  # a chunk bigger than the dataset's
        blosc2.compress2(bytes(8), typesize=4),  # a smaller one
    ],
)
def test_a_chunk_that_is_not_the_datasets_is_a_protocol_error(fake, how, bad):
    """Chunks decode on the client's threads: an error there is the read's, never memory
    written past a buffer or stale values, and the client reads on."""
    fake.garble = {3: bad}
    error = "chunk 3 of one.b2nd is not a Blosc2 chunk of 32 bytes"

    async def twice(c):
        ds = await c.dataset("r/one.b2nd")
        with pytest.raises(ProtocolError, match=error):
            await ds[0:50]
        fake.garble = {}
        return await ds[0:50]

    if how == "async":
        got = run_async(fake, twice)
    else:
        with Client(URL, transport=httpx.MockTransport(fake)) as c:
            ds = c.dataset("r/one.b2nd")
            with pytest.raises(ProtocolError, match=error):
                ds[0:50]
            fake.garble = {}
            got = ds[0:50]
    np.testing.assert_array_equal(got, fake.originals["one.b2nd"][0:50])


@pytest.mark.parametrize("how", ["sync", "async"])
def test_a_connection_dropped_while_chunks_decode_fails_the_read_only(fake, how):
    """Frames already handed to the decoding threads do not outlive the read that failed:
    the error is the read's, and the next read gets every value right."""
    nd = blosc2.asarray(np.arange(4000, dtype=np.float64), chunks=(400,), blocks=(100,))
    fake.keep.append(nd)
    fake.containers["long.b2nd"] = nd.schunk
    fake.infos["long.b2nd"] = describe(nd, "long.b2nd", "b2nd", size=0, mtime=0.0)
    fake.cut = len(fake.frames("long.b2nd", "0-9")) // 2  # some frames whole, one cut short

    async def twice(c):
        ds = await c.dataset("r/long.b2nd")
        with pytest.raises(Unavailable):
            await ds[:]
        fake.cut = None
        return await ds[:]

    if how == "async":
        got = run_async(fake, twice)
    else:
        with Client(URL, transport=httpx.MockTransport(fake)) as c:
            ds = c.dataset("r/long.b2nd")
            with pytest.raises(Unavailable):
                ds[:]
            fake.cut = None
            got = ds[:]
    np.testing.assert_array_equal(got, np.arange(4000, dtype=np.float64))


def test_a_chunk_not_asked_for_is_a_protocol_error(fake):
    fake.extra = [6]  # a chunk of the dataset, with its true digest, but not one [0:10] touches
    with Client(URL, transport=httpx.MockTransport(fake)) as c:
        ds = c.dataset("r/one.b2nd")
        with pytest.raises(ProtocolError, match="sent chunk 6"):
            ds[0:10]
        fake.extra = []
        np.testing.assert_array_equal(ds[0:10], fake.originals["one.b2nd"][0:10])


def test_empty_selection_reads_no_chunk(client, fake):
    ds = client.dataset("r/grid/a.b2nd")
    del fake.requests[:]
    got = ds[3:3, ::-1]
    assert got.shape == (0, 17) and got.dtype == np.float64
    if client.selections == "chunks":
        assert fake.requests == []


def test_selections_option_is_checked():
    with pytest.raises(BadRequest, match="selections"):
        Client(URL, selections="json")


# --- downloads ------------------------------------------------------------------------------


def test_download_dataset_and_plain_file(client, fake, tmp_path, monkeypatch):
    seen = []
    out = client.download("r/grid/a.b2nd", tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert out == tmp_path / "a.b2nd"
    got = blosc2.open(str(out))
    np.testing.assert_array_equal(got[...], fake.originals["grid/a.b2nd"])
    assert got.schunk.vlmeta["units"] == "m"
    total = fake.infos["grid/a.b2nd"].nbytes
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    monkeypatch.chdir(tmp_path)
    assert client.download("r/notes.txt").read_bytes() == PLAIN  # default: ./NAME
    assert list(tmp_path.glob("*.part")) == []


def test_download_in_windows(client, fake, tmp_path, monkeypatch):
    chunksize = fake.infos["grid/a.b2nd"].chunksize
    monkeypatch.setattr("caterva.client.download.WINDOW_BYTES", 2 * chunksize)
    client.download("r/grid/a.b2nd", tmp_path / "x.b2nd")
    batches = [r.url.params["i"] for r in fake.requests if "/chunks/" in r.url.path]
    assert batches == ["0-1", "2-3", "4-5", "6-7", "8"]


def test_download_root_as_a_tree(client, fake, tmp_path):
    out = client.download("r", tmp_path / "r")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == sorted(fake.infos)
    np.testing.assert_array_equal(
        blosc2.open(str(out / "rec.b2nd"))[...], fake.originals["rec.b2nd"]
    )
    assert blosc2.open(str(out / "zero.b2nd"))[()] == 2.5
    assert (out / "notes.txt").read_bytes() == PLAIN


def test_download_root_asks_for_its_small_datasets_in_one_request(client, fake, tmp_path):
    client.download("r", tmp_path / "r")
    posts = [json.loads(r.content) for r in fake.requests if r.method == "POST"]
    assert len(posts) == 1
    assert sorted(d["path"] for d in posts[0]["datasets"]) == sorted(fake.infos)
    assert not [r for r in fake.requests if "/chunks/" in r.url.path]


def test_download_root_that_changed_midway_leaves_no_partial_file(client, fake, tmp_path):
    fake.tamper = 0
    with pytest.raises(DigestMismatch, match="changed during the download"):
        client.download("r", tmp_path / "r")
    assert not [p for p in (tmp_path / "r").rglob("*.part")]


def test_download_that_changed_midway_leaves_nothing(client, fake, tmp_path):
    fake.tamper = 3
    (tmp_path / "a.b2nd").write_bytes(b"old")
    with pytest.raises(DigestMismatch, match="changed during the download"):
        client.download("r/grid/a.b2nd", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.b2nd"]
    assert (tmp_path / "a.b2nd").read_bytes() == b"old"  # never replaced by a partial file


def test_download_error_before_streaming(client, tmp_path):
    with pytest.raises(UnknownDataset):
        client.download("r/nope.b2nd", tmp_path)
    with pytest.raises(UnknownRoot):
        client.download("nope", tmp_path / "nope")


# --- events ---------------------------------------------------------------------------------


def test_watch_yields_events_and_skips_blank_lines(client, fake):
    with client.watch("r") as events:
        assert next(events) == fake.events[0]
        with pytest.raises(Unavailable, match="closed the event stream"):
            next(events)
    assert list(events) == []  # closed
    assert fake.requests[-1].url.params["root"] == "r"


def test_watch_of_a_stream_closed_mid_chunk_says_it_was_closed(fake):
    """A subscriber that stops may close the stream without its last chunk: the same end."""

    class Cut(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __iter__(self):
            yield b'{"root": "r"}\n'
            raise httpx.RemoteProtocolError("peer closed connection (incomplete chunked read)")

        async def __aiter__(self):
            for piece in self:
                yield piece

    def cut(request):
        return httpx.Response(200, stream=Cut())

    with Client(URL, transport=httpx.MockTransport(cut)) as c, c.watch("r") as events:
        assert next(events) == {"root": "r"}
        with pytest.raises(Unavailable, match="closed the event stream"):
            next(events)

    async def watch():
        async with AsyncClient(URL, transport=httpx.MockTransport(cut)) as c:
            async with c.watch("r") as events:
                assert await anext(events) == {"root": "r"}
                with pytest.raises(Unavailable, match="closed the event stream"):
                    await anext(events)

    asyncio.run(watch())


def test_watch_of_an_unfollowed_root_fails_on_open(client, fake):
    fake.followed.clear()

    def refuse(request):
        return fake.error(NotFollowed("root 'r' is not followed"))

    with Client(URL, transport=httpx.MockTransport(refuse)) as c:
        with pytest.raises(NotFollowed):
            c.watch("r").open()


# --- the async twin -------------------------------------------------------------------------


def test_async_client_has_the_same_surface():
    def public(cls):
        return {n for n in dir(cls) if not n.startswith("_")}

    assert public(Client) - {"close"} == public(AsyncClient) - {"aclose"}
    assert public(caterva.Dataset) == public(caterva.AsyncDataset)


def test_async_reads_and_downloads(fake, tmp_path):
    async def body(c):
        roots = await c.roots()
        ds = await c.dataset("r/grid/a.b2nd")
        part = await ds[2:9, ::-3]
        same = await ds.get((slice(2, 9), slice(None, None, -3)))
        field = await (await c.dataset("r/rec.b2nd"))["t"][1:4]
        out = await c.download("r", tmp_path / "all", progress=seen.append_progress)
        with pytest.raises(BadSelection):
            ds[0, 0, 0]  # raises at once, no await needed
        async with c.watch("r") as events:
            event = await events.__anext__()
        return roots, part, same, field, out, event

    class Seen(list):
        def append_progress(self, done, total):
            self.append((done, total))

    seen = Seen()
    roots, part, same, field, out, event = run_async(fake, body)
    assert roots[0].name == "r"
    np.testing.assert_array_equal(part, fake.originals["grid/a.b2nd"][2:9, ::-3])
    np.testing.assert_array_equal(same, part)
    np.testing.assert_array_equal(field, fake.originals["rec.b2nd"]["t"][1:4])
    np.testing.assert_array_equal(
        blosc2.open(str(out / "grid/a.b2nd"))[...], fake.originals["grid/a.b2nd"]
    )
    assert seen[-1][0] == seen[-1][1] == sum(i.nbytes for i in fake.infos.values())
    assert event["event"] == "update"


def test_async_errors_map_the_same(fake):
    fake.fail = httpx.ConnectError("refused")

    async def body(c):
        with pytest.raises(Unavailable, match="cannot reach the subscriber"):
            await c.roots()
        with pytest.raises(UnknownDataset):
            await c.dataset("r/nope.b2nd")

    run_async(fake, body)


def test_async_download_failure_removes_the_part_file(fake, tmp_path):
    fake.tamper = 0

    async def body(c):
        with pytest.raises(DigestMismatch):
            await c.download("r/one.b2nd", tmp_path)

    run_async(fake, body)
    assert list(tmp_path.iterdir()) == []
