"""The Python API against real services: a broker, a publisher of a small root made here with
blosc2, and a subscriber, started once for the module.

Random basic selections equal numpy's; downloads equal the originals; the sync client works
inside a running event loop; the async client does the same things concurrently; events
arrive; errors come back as the caterva error they are.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import blosc2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from caterva.client import AsyncClient, Client
from caterva.errors import BadSelection, NotFollowed, Unavailable, UnknownDataset, UnknownRoot
from tests.conftest import Service, Services, free_port

REC = np.dtype([("id", "<i4"), ("t", "<f8"), ("pos", "<f4", (2,)), ("tag", "S3")])
ARRAYS = ("grid.b2nd", "records.b2nd", "line.b2nd", "scalar.b2nd")


def make_root(directory: Path) -> dict[str, object]:
    """The datasets of root ``demo``; returns what each one holds (arrays, or bytes)."""
    rng = np.random.default_rng(2024)
    records = np.zeros(40, REC)
    records["id"] = np.arange(40) * 3 - 50
    records["t"] = rng.normal(size=40)
    records["pos"] = rng.normal(size=(40, 2))
    records["tag"] = [b"a%02d" % i for i in range(40)]
    originals: dict[str, object] = {
        "grid.b2nd": rng.normal(size=(12, 17, 9)).astype(np.float32),
        "records.b2nd": records,
        "line.b2nd": np.arange(100, dtype=np.int64) ** 2,
        "scalar.b2nd": np.array(6.25),
        "tide/levels.b2nd": np.linspace(0, 1, 20),  # the one the watch tests change
    }
    layouts = {
        "grid.b2nd": dict(chunks=(5, 6, 4), blocks=(2, 3, 2)),
        "records.b2nd": dict(chunks=(12,), blocks=(4,)),
        "line.b2nd": dict(chunks=(16,), blocks=(8,)),
        "scalar.b2nd": {},
        "tide/levels.b2nd": dict(chunks=(5,), blocks=(5,)),
    }
    for path, array in originals.items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        nd = blosc2.asarray(array, urlpath=str(directory / path), mode="w", **layouts[path])
        nd.schunk.vlmeta["units"] = "m"
    notes = "caterva notes: ünïcode and lines\n" * 200
    (directory / "docs").mkdir()
    (directory / "docs/notes.txt").write_text(notes)
    originals["docs/notes.txt"] = notes.encode()
    blob = rng.integers(0, 256, size=3000, dtype=np.uint8).tobytes()
    (directory / "blob.bin").write_bytes(blob)
    originals["blob.bin"] = blob
    samples = (np.sin(np.arange(10_001) / 50) * 3000).astype(np.int16).tobytes()
    frame = blosc2.SChunk(
        chunksize=4000,
        data=samples,
        urlpath=str(directory / "wave.b2frame"),
        mode="w",
        cparams={"typesize": 2},
    )  # 6 chunks, the last one short
    frame.vlmeta["rate"] = 100
    del frame
    originals["wave.b2frame"] = samples
    return originals


class Stack(Services):
    """Broker, publisher of ``data/`` as root ``demo``, subscriber (child processes)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.tmp = tmp
        self.data = tmp / "data"
        self.data.mkdir()
        self.originals = make_root(self.data)
        self.broker = self.start(
            "bro", "--port", str(free_port()), "--statedir", str(tmp / "bro")
        ).url
        self.pub = self.start_publisher(wait=False)
        sub = self.start(
            "sub",
            "--broker",
            self.broker,
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(tmp / "sub"),
            "--cache-size",
            "1GiB",
            wait=False,
        )
        self.pub.wait_ready()
        self.url = sub.wait_ready()
        self.sub = sub

    def start_publisher(self, wait: bool = True) -> Service:
        self.pub = self.start(
            "pub",
            "demo",
            str(self.data),
            "--broker",
            self.broker,
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(self.tmp / "pub"),
            wait=wait,
        )
        return self.pub

    def follow(self) -> None:
        """Wait for the announcement to reach the subscriber, then follow. Announcements
        are asynchronous and the API has no signal for an unfollowed root: poll briefly."""
        with Client(self.url) as client:
            deadline = time.monotonic() + 20
            while not any(r.name == "demo" and r.online for r in client.roots()):
                assert time.monotonic() < deadline, "root demo was never announced"
                time.sleep(0.02)
            client.follow("demo")


def change(stack: Stack, index: int, value: float) -> None:
    """Write one value of tide/levels.b2nd at the publisher, in place."""
    levels = blosc2.open(str(stack.data / "tide/levels.b2nd"), mode="a")
    levels[index] = value
    del levels  # flushes


def wait_event(events, **match) -> dict:
    """The first event whose fields equal ``match`` (events may interleave)."""
    for event in events:
        if all(event.get(k) == v for k, v in match.items()):
            return event
    raise AssertionError("the event stream ended")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("client-stack"))
    try:
        stack.follow()
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def client(stack):
    with Client(stack.url) as c:
        yield c


@pytest.fixture(scope="module")
def datasets(client):
    return {path: client.dataset(f"demo/{path}") for path in ARRAYS}


# --- selections equal numpy -----------------------------------------------------------------


def view_of(original: np.ndarray, field: str | None) -> np.ndarray:
    return original if field is None else original[field]


@st.composite
def reads(draw):
    path = draw(st.sampled_from(ARRAYS))
    field = draw(st.sampled_from([None, "id", "pos", "tag"])) if path == "records.b2nd" else None
    shape = view_of(ORIGINAL_SHAPES[path], field).shape
    key = draw(hnp.basic_indices(shape, min_dims=0, allow_newaxis=False, allow_ellipsis=True))
    return path, field, key


# shapes only (cheap zero arrays of the right dtype) so the strategy needs no stack
ORIGINAL_SHAPES = {
    "grid.b2nd": np.zeros((12, 17, 9), np.float32),
    "records.b2nd": np.zeros(40, REC),
    "line.b2nd": np.zeros(100, np.int64),
    "scalar.b2nd": np.zeros((), np.float64),
}


@settings(max_examples=100, deadline=None, database=None)
@given(read=reads())
def test_random_basic_selections_equal_numpy(stack, datasets, read):
    path, field, key = read
    want = view_of(stack.originals[path], field)[key]
    ds = datasets[path] if field is None else datasets[path][field]
    got = ds[key]
    assert type(got) is type(want)
    assert np.shape(got) == np.shape(want) and np.asarray(got).dtype == np.asarray(want).dtype
    assert np.asarray(got).tobytes() == np.asarray(want).tobytes()


def test_metadata(client, stack):
    ds = client.dataset("demo/grid.b2nd")
    assert (ds.shape, ds.dtype, ds.chunks, ds.blocks, ds.nchunks) == (
        (12, 17, 9),
        np.dtype("float32"),
        (5, 6, 4),
        (2, 3, 2),
        27,
    )
    assert ds.kind == "b2nd" and ds.vlmeta == {"units": "m"}
    assert [i.path for i in client.list("demo")] == sorted(stack.originals)
    frame = client.dataset("demo/wave.b2frame")
    assert frame.kind == "b2frame" and frame.vlmeta == {"rate": 100}
    assert frame[100:120].tobytes() == stack.originals["wave.b2frame"][100:120]


def test_cached_counts_grow_with_reads(client):
    before = client.dataset("demo/line.b2nd").cached
    client.dataset("demo/line.b2nd")[-1]
    after = client.dataset("demo/line.b2nd").cached
    assert after.chunks >= 1 and after.chunks >= before.chunks and after.bytes > 0


# --- downloads ------------------------------------------------------------------------------


def test_download_root_equals_the_originals(client, stack, tmp_path):
    seen = []
    out = client.download("demo", tmp_path / "copy", progress=lambda d, t: seen.append((d, t)))
    for path, original in stack.originals.items():
        if isinstance(original, bytes) and path.endswith(".b2frame"):
            assert blosc2.open(str(out / path))[:] == original
        elif isinstance(original, bytes):
            assert (out / path).read_bytes() == original
        else:
            got = blosc2.open(str(out / path))
            np.testing.assert_array_equal(got[()] if got.ndim == 0 else got[...], original)
            assert got.schunk.vlmeta["units"] == "m"
    total = sum(i.nbytes for i in client.list("demo"))
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert not list(out.rglob("*.part"))


def test_download_one_dataset_keeps_its_layout(client, tmp_path):
    path = client.download("demo/grid.b2nd", tmp_path / "g.b2nd")
    got = blosc2.open(str(path))
    assert (got.chunks, got.blocks) == ((5, 6, 4), (2, 3, 2))
    assert client.dataset("demo/blob.bin").download(tmp_path).name == "blob.bin"


# --- the sync client in an event loop, and the async client ---------------------------------


def test_sync_client_works_inside_a_running_event_loop(stack, tmp_path):
    async def notebook_cell():
        asyncio.get_running_loop()  # we are inside a loop, as in Jupyter
        with Client(stack.url) as c:
            part = c.dataset("demo/grid.b2nd")[1:9:3, ::-4, -1]
            file = c.download("demo/docs/notes.txt", tmp_path)
            roots = c.roots()
        return part, file, roots

    part, file, roots = asyncio.run(notebook_cell())
    np.testing.assert_array_equal(part, stack.originals["grid.b2nd"][1:9:3, ::-4, -1])
    assert file.read_bytes() == stack.originals["docs/notes.txt"]
    assert [r.name for r in roots] == ["demo"]


def test_async_client_reads_concurrently(stack, tmp_path):
    async def main():
        async with AsyncClient(stack.url) as c:
            grid, records = await asyncio.gather(
                c.dataset("demo/grid.b2nd"), c.dataset("demo/records.b2nd")
            )
            parts = await asyncio.gather(
                grid[..., 2],
                grid.get((slice(None, None, -2), 3)),
                records["pos"][5:30:5, 1],
                records[7],
            )
            out = await c.download("demo/wave.b2frame", tmp_path)
            return parts, out

    (a, b, c, d), out = asyncio.run(main())
    grid, records = stack.originals["grid.b2nd"], stack.originals["records.b2nd"]
    np.testing.assert_array_equal(a, grid[..., 2])
    np.testing.assert_array_equal(b, grid[::-2, 3])
    np.testing.assert_array_equal(c, records["pos"][5:30:5, 1])
    assert d == records[7]
    assert blosc2.open(str(out))[:] == stack.originals["wave.b2frame"]


# --- events ---------------------------------------------------------------------------------


def test_watch_sees_a_change(client, stack):
    with client.watch("demo") as events:
        change(stack, 7, 99.0)  # chunk 1 of (5,) chunks
        event = wait_event(events, event="update", path="tide/levels.b2nd")
    assert event["root"] == "demo" and event["chunks"] == [1]
    assert client.dataset("demo/tide/levels.b2nd")[7] == 99.0


def test_async_watch_sees_a_change(stack):
    async def main():
        async with AsyncClient(stack.url) as c, c.watch("demo") as events:
            change(stack, 12, -5.0)
            async for event in events:
                if event.get("path") == "tide/levels.b2nd":
                    return event, await (await c.dataset("demo/tide/levels.b2nd"))[12]

    event, value = asyncio.run(main())
    assert event["event"] == "update" and event["chunks"] == [2] and value == -5.0


# --- errors ---------------------------------------------------------------------------------


def test_errors_from_real_services(client, stack):
    with pytest.raises(UnknownRoot):
        client.dataset("nosuchroot/x.b2nd")
    with pytest.raises(UnknownDataset):
        client.dataset("demo/nope.b2nd")
    with pytest.raises(BadSelection):
        client.dataset("demo/line.b2nd")[100]
    with pytest.raises(UnknownRoot):
        client.follow("nosuchroot")


def test_unfollowed_root_says_how_to_follow(client):
    client.unfollow("demo")
    try:
        with pytest.raises(NotFollowed, match="caterva follow demo"):
            client.list("demo")
        with pytest.raises(NotFollowed):
            client.watch("demo").open()
    finally:
        client.follow("demo")


def test_no_subscriber_is_unavailable():
    with Client(f"http://127.0.0.1:{free_port()}") as c:
        with pytest.raises(Unavailable, match="^cannot reach the subscriber at "):
            c.roots()
