"""The subscriber against a real broker and a real publisher, all as child processes."""

from __future__ import annotations

import io
import json
import queue
import threading
import time

import blosc2
import httpx
import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from caterva.mqtt import BrokerURL
from caterva.protocol import rest, topics
from caterva.protocol.messages import Announcement
from tests.conftest import free_port

GRID = np.add.outer(np.linspace(0, 6, 60), np.linspace(0, 8, 80)) ** 2  # (60, 80) float64


def make_root(directory):
    directory.mkdir()
    blosc2.asarray(
        GRID, urlpath=str(directory / "grid.b2nd"), mode="w", chunks=(20, 20), blocks=(10, 10)
    )
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 2**63, size=(64, 32768), dtype=np.int64)  # 64 incompressible chunks
    blosc2.asarray(noise, urlpath=str(directory / "noise.b2nd"), mode="w", chunks=(1, 32768))
    (directory / "docs").mkdir()
    (directory / "docs" / "notes.txt").write_text("caterva notes\n" * 5000)
    return {"noise": noise}


class Stack:
    """Broker, publisher of ``data/`` as root ``demo``, subscriber; plus an event listener."""

    def __init__(self, spawn, tmp_path, broker: str, cache_size: str = "1GiB") -> None:
        self.spawn, self.tmp, self.broker = spawn, tmp_path, broker
        self.data = tmp_path / "data"
        self.arrays = make_root(self.data)
        self.start_publisher()
        self.start_subscriber(cache_size)

    def start_publisher(self):
        self.pub = self.spawn(
            "pub",
            "demo",
            str(self.data),
            "--broker",
            self.broker,
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(self.tmp / "pubstate"),
        )
        return self.pub

    def start_subscriber(self, cache_size: str = "1GiB"):
        self.sub = self.spawn(
            "sub",
            "--broker",
            self.broker,
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(self.tmp / "substate"),
            "--cache-size",
            cache_size,
        )
        self.http = httpx.Client(base_url=self.sub.url + "/v1", timeout=30)
        return self.sub

    def wait_root(self, online: bool = True, timeout: float = 10) -> dict:
        """Wait until the subscriber lists ``demo`` in the given state (announcements are
        asynchronous: this is the readiness signal the API offers)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for root in self.http.get("/roots").json()["roots"]:
                if root["root"] == "demo" and root["online"] == online:
                    return root
            time.sleep(0.02)
        raise AssertionError(f"root demo never became online={online}")

    def follow(self) -> None:
        self.wait_root()
        assert self.http.put("/roots/demo/follow").status_code == 200

    def read(self, path: str, sel: str = "...") -> np.ndarray:
        r = self.http.get(f"/roots/demo/data/{path}", params={"sel": sel})
        assert r.status_code == 200, r.text
        return np.load(io.BytesIO(r.content), allow_pickle=False)

    def served(self, path: str) -> int:
        stats = httpx.get(self.pub.url + "/v1/stats").json()
        return stats["datasets"].get(path, 0)

    def events(self) -> queue.Queue:
        return event_stream(self.sub.url)


def event_stream(url: str) -> queue.Queue:
    """A service's events (NDJSON), from a background reader; ready when this returns."""
    q: queue.Queue = queue.Queue()
    opened = threading.Event()

    def reader():
        try:
            with httpx.stream("GET", url + "/v1/events", timeout=None) as r:
                opened.set()
                for line in r.iter_lines():
                    if line:
                        q.put(json.loads(line))
        except httpx.HTTPError:
            pass  # the service went away: the test decides whether that was expected

    threading.Thread(target=reader, daemon=True).start()
    assert opened.wait(10)
    return q


def wait_until(condition, timeout: float = 10) -> None:
    """Poll a readiness condition the API exposes, with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def next_event(q: queue.Queue, event: str, timeout: float = 5, **match) -> dict:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            e = q.get(timeout=left)
        except queue.Empty:
            break
        if e["event"] == event and all(e.get(k) == v for k, v in match.items()):
            return e
    raise AssertionError(f"no {event} event matching {match} within {timeout} s")


def followed_stack(tmp_path_factory, name: str):
    """A broker and a Stack following ``demo``, for a module's tests (yield from it in a
    module-scoped fixture); stopped after them."""
    from tests.conftest import Services

    tmp = tmp_path_factory.mktemp(name)
    services = Services(tmp)
    try:
        broker = services.start(
            "bro", "--port", str(free_port()), "--statedir", str(tmp / "broker")
        ).url
        stack = Stack(services.start, tmp, broker)
        stack.follow()
        yield stack
    finally:
        services.close()


@pytest.fixture
def stack(spawn, tmp_path):
    broker = spawn("bro", "--port", str(free_port()), "--statedir", str(tmp_path / "broker")).url
    return Stack(spawn, tmp_path, broker)


def test_end_to_end_on_each_broker(spawn, tmp_path, broker):
    s = Stack(spawn, tmp_path, broker)
    s.follow()
    assert np.array_equal(s.read("grid.b2nd", "5:25, ::3"), GRID[5:25, ::3])
    listing = s.http.get("/roots").json()["roots"]
    assert [(r["root"], r["online"], r["followed"], r["datasets"]) for r in listing] == [
        ("demo", True, True, 3)
    ]


def test_a_slice_fetches_exactly_the_chunks_it_touches_once(stack):
    stack.follow()
    got = stack.read("grid.b2nd", "0:30, 10:50")  # rows 0-29 x cols 10-49: 2 x 3 chunks
    assert np.array_equal(got, GRID[0:30, 10:50])
    assert stack.served("grid.b2nd") == 6
    assert np.array_equal(stack.read("grid.b2nd", "0:30, 10:50"), GRID[0:30, 10:50])
    assert stack.served("grid.b2nd") == 6  # the second read was served from the cache
    assert np.array_equal(stack.read("grid.b2nd", "-1, ::-7"), GRID[-1, ::-7])  # 4 more chunks
    assert stack.served("grid.b2nd") == 10


def test_follow_is_one_manifest_request(stack):
    stack.wait_root()
    before = httpx.get(stack.pub.url + "/v1/stats").json()["endpoints"]
    stack.follow()
    after = httpx.get(stack.pub.url + "/v1/stats").json()["endpoints"]
    assert after.get("manifest", 0) - before.get("manifest", 0) == 1
    assert after.get("info", 0) == before.get("info", 0)
    info = stack.http.get("/roots/demo/info/grid.b2nd").json()
    assert (info["shape"], info["chunks"], info["blocks"], info["cached"]) == (
        [60, 80],
        [20, 20],
        [10, 10],
        {"chunks": 0, "bytes": 0},
    )


def test_a_change_is_visible_within_a_second_refetching_only_changed_chunks(stack):
    stack.follow()
    assert np.array_equal(stack.read("grid.b2nd"), GRID)
    assert stack.served("grid.b2nd") == 12
    before = stack.http.get("/roots/demo/manifest")  # encoded now, and kept until a change
    events = stack.events()
    started = time.monotonic()
    arr = blosc2.open(str(stack.data / "grid.b2nd"), mode="a")
    arr[0:20, 0:20] = -1.0  # exactly chunk 0
    event = next_event(events, "update", path="grid.b2nd")
    assert time.monotonic() - started < 1.0
    assert event["chunks"] == [0]
    after = stack.http.get("/roots/demo/manifest")
    assert after.headers["etag"] != before.headers["etag"]
    changed = next(d for d in after.json()["datasets"] if d["path"] == "grid.b2nd")
    assert changed["etag"] == event["etag"]
    expected = GRID.copy()
    expected[0:20, 0:20] = -1.0
    assert np.array_equal(stack.read("grid.b2nd"), expected)
    assert stack.served("grid.b2nd") == 13


def test_a_selection_too_big_to_decode_is_refused_before_any_fetch(stack):
    """The subscriber decodes a .npy answer in memory: more than NPY_MAX is a 400 with its
    code, whatever the dataset's size, and nothing is fetched for it."""
    stack.follow()
    events = stack.events()
    side = int((rest.NPY_MAX // 8) ** 0.5) + 1  # just over NPY_MAX of float64; tiny on disk
    blosc2.zeros((side, side), dtype=np.float64, urlpath=str(stack.data / "big.b2nd"), mode="w")
    next_event(events, "create", path="big.b2nd")
    r = stack.http.get("/roots/demo/data/big.b2nd", params={"sel": ":, ..."})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_selection")
    # the dataset as the user named it, the selection as written
    assert r.json()["error"]["message"].startswith("demo/big.b2nd[:, ...] is ")
    assert "select less" in r.json()["error"]["message"]
    assert stack.served("big.b2nd") == 0
    assert not stack.read("big.b2nd", f"0:{side // 2}").any()  # half of it is fine


def test_a_dataset_deleted_while_the_subscriber_was_down_is_gone_after_restart(stack):
    stack.follow()
    assert stack.read("docs/notes.txt", "0:7").tobytes() == b"caterva"
    stack.sub.stop()
    (stack.data / "docs" / "notes.txt").unlink()
    stack.start_subscriber()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # resync happens once the announcement arrives
        paths = [d["path"] for d in stack.http.get("/roots/demo/manifest").json()["datasets"]]
        if "docs/notes.txt" not in paths:
            break
        time.sleep(0.02)
    assert paths == ["grid.b2nd", "noise.b2nd"]
    r = stack.http.get("/roots/demo/data/docs/notes.txt")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_dataset"


def test_publisher_offline_serves_cache_and_503_for_the_rest(stack):
    stack.follow()
    cached = stack.read("grid.b2nd", "0:20, 0:20")
    events = stack.events()
    stack.pub.kill()  # SIGKILL: the broker sends its last will
    next_event(events, "source", online=False)
    assert np.array_equal(stack.read("grid.b2nd", "0:20, 0:20"), cached)
    started = time.monotonic()
    r = stack.http.get("/roots/demo/data/grid.b2nd", params={"sel": "40:60, 60:80"})
    assert time.monotonic() - started < 2
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "source_offline"
    stack.start_publisher()
    next_event(events, "source", online=True)
    assert np.array_equal(stack.read("grid.b2nd", "40:60, 60:80"), GRID[40:60, 60:80])


def test_many_datasets_in_one_stream_are_one_request_upstream(stack):
    stack.follow()
    endpoints = lambda: httpx.get(stack.pub.url + "/v1/stats").json()["endpoints"]  # noqa: E731
    before = endpoints()
    wanted = [{"path": "docs/notes.txt", "i": "0"}, {"path": "grid.b2nd", "i": "11,0-1"}]
    r = stack.http.post("/roots/demo/chunks", json={"datasets": wanted})
    assert r.status_code == 200
    frames = list(rest.BatchReader((i, 2**30) for i in (0, 11, 0, 1)).feed(r.content))
    assert [i for i, _, _ in frames] == [0, 11, 0, 1]
    assert endpoints()["chunks"] - before.get("chunks", 0) == 1  # both datasets, cold: one
    assert (stack.served("docs/notes.txt"), stack.served("grid.b2nd")) == (1, 3)
    single = stack.http.get("/roots/demo/chunks/grid.b2nd", params={"i": "11,0-1"}).content
    assert b"".join(rest.frame_header(i, data, d) + data for i, d, data in frames[1:]) == single
    assert stack.served("grid.b2nd") == 3  # the second read came from the cache


def test_a_batch_the_cache_holds_whole_is_sent_from_its_files(stack):
    """Every chunk cached: a Content-Length answer, the chunk files sent as they are
    (subscriber/source.py, sendfile); partly cold, or more than SPAN_FILES chunks: streamed
    (chunked). The same frames either way."""
    from caterva.protocol.metadata import chunk_digest
    from caterva.subscriber.source import SPAN_FILES

    stack.follow()
    stored = blosc2.open(str(stack.data / "noise.b2nd")).schunk
    assert stored.nchunks == SPAN_FILES  # the most a span answer sends

    def frames(indices):
        chunks = [stored.get_chunk(i) for i in indices]
        return b"".join(
            rest.frame_header(i, c, chunk_digest(c)) + c for i, c in zip(indices, chunks)
        )

    def get(i):
        r = stack.http.get("/roots/demo/chunks/noise.b2nd", params={"i": i})
        assert r.status_code == 200
        return r.headers.get("content-length"), r.content

    assert get("0-3") == (None, frames(range(4)))  # cold: streamed
    assert get("0-3") == (str(len(frames(range(4)))), frames(range(4)))  # from the files
    assert get("2-5") == (None, frames(range(2, 6)))  # 4 and 5 were not cached
    get(f"0-{SPAN_FILES - 1}")
    assert get(f"0-{SPAN_FILES - 1}")[0] is not None  # all cached, SPAN_FILES chunks
    wanted = [{"path": "noise.b2nd", "i": f"0-{SPAN_FILES - 1}"}, {"path": "grid.b2nd", "i": "0"}]
    stack.http.post("/roots/demo/chunks", json={"datasets": wanted})
    more = stack.http.post("/roots/demo/chunks", json={"datasets": wanted})  # all cached
    assert "content-length" not in more.headers
    assert more.content.startswith(frames(range(SPAN_FILES)))


def test_bad_requests_get_json_errors(stack):
    stack.follow()
    cases = {
        "/roots/nope/data/x.b2nd": (404, "unknown_root"),
        "/roots/demo/data/missing.b2nd": (404, "unknown_dataset"),
        "/roots/demo/data/grid.b2nd?sel=0:2,0:2,0:2": (400, "bad_selection"),
        "/roots/demo/data/grid.b2nd?sel=__import__('os')": (400, "bad_selection"),
        "/roots/demo/data/grid.b2nd?sel=99": (400, "bad_selection"),
        "/roots/demo/data/..%2F..%2Fetc%2Fpasswd": (400, "invalid_name"),
        "/nowhere": (404, "not_found"),
    }
    for url, (status, code) in cases.items():
        r = stack.http.get(url)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), url


def test_cache_cap_holds_under_three_times_its_size(spawn, tmp_path):
    broker = spawn("bro", "--port", str(free_port()), "--statedir", str(tmp_path / "broker")).url
    stack = Stack(spawn, tmp_path, broker, cache_size="6MB")  # noise.b2nd is ~16 MB compressed
    stack.follow()
    noise = stack.arrays["noise"]
    for rows in ("0:22", "22:44", "44:64", "0:64"):
        assert np.array_equal(stack.read("noise.b2nd", rows), noise[eval_rows(rows)])
        stats = stack.http.get("/stats").json()
        assert stats["used"] <= 6_000_000
    assert stats["evicted"] > 0
    # the last read needed 16 MB at once: what did not fit went to the reader uncached
    assert stats["passed_through"] > 0


def eval_rows(text: str) -> slice:
    a, b = text.split(":")
    return slice(int(a), int(b))


def test_sigkill_during_a_large_download_then_resume(stack):
    stack.follow()
    # the batch stream sends its first window as soon as it is cached; kill after the first bytes
    url = stack.sub.url + "/v1/roots/demo/chunks/noise.b2nd"
    with httpx.stream("GET", url, params={"i": "0-63"}, timeout=30) as r:
        assert r.status_code == 200
        assert next(r.iter_bytes())
        stack.sub.kill()
    served_before = stack.served("noise.b2nd")
    assert 0 < served_before <= 64
    stack.start_subscriber()
    info = stack.http.get("/roots/demo/info/noise.b2nd").json()
    kept = info["cached"]["chunks"]
    assert kept > 0
    r = stack.http.get("/roots/demo/file/noise.b2nd")
    assert r.status_code == 200
    out = stack.tmp / "noise-copy.b2nd"
    out.write_bytes(r.content)
    assert np.array_equal(blosc2.open(str(out))[:], stack.arrays["noise"])
    assert stack.served("noise.b2nd") - served_before == 64 - kept


def flood(broker: str, count: int) -> None:
    """Retain ``count`` announcements of other roots on the broker (acked, so all are in)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    url = BrokerURL.parse(broker)
    client.connect(url.host, url.port)
    client.loop_start()
    try:
        for i in range(count):
            body = Announcement(
                root=f"r{i}",
                url="http://127.0.0.1:9",
                session="s",
                manifest_etag="e",
                datasets=1,
                origin="flood",
                hops=["flood"],
            )
            info = client.publish(
                topics.root("flood", f"r{i}"), body.to_bytes(), qos=1, retain=True
            )
        info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_read_right_after_start_waits_for_the_retained_hints(spawn, tmp_path, broker):
    # a long burst of retained messages ahead of ours: a read arriving before the publisher's
    # status is in must wait for it, not answer source_offline (CI caught that once)
    flood(broker, 1500)
    stack = Stack(spawn, tmp_path, broker)
    stack.follow()
    stack.sub.stop()
    stack.start_subscriber()
    r = stack.http.get("/roots/demo/data/grid.b2nd", params={"sel": "0:20, 0:20"})
    assert r.status_code == 200, r.text
    assert np.array_equal(np.load(io.BytesIO(r.content)), GRID[0:20, 0:20])


def test_survives_a_broker_restart(spawn, tmp_path):
    port = free_port()
    broker_args = ("bro", "--port", str(port), "--statedir", str(tmp_path / "broker"))
    broker = spawn(*broker_args)
    stack = Stack(spawn, tmp_path, broker.url)
    stack.follow()
    assert np.array_equal(stack.read("grid.b2nd", "0:20, 0:20"), GRID[0:20, 0:20])
    events = stack.events()
    broker.stop()
    spawn(*broker_args)  # same port: publisher and subscriber reconnect by themselves
    for url in (stack.pub.url, stack.sub.url):
        wait_until(
            lambda url=url: httpx.get(url + "/v1/health").json()["broker_connected"], timeout=20
        )
    arr = blosc2.open(str(stack.data / "grid.b2nd"), mode="a")
    arr[40:60, 60:80] = 7.0  # chunk 11
    event = next_event(events, "update", path="grid.b2nd", timeout=20)
    assert event["chunks"] == [11]
    assert np.all(stack.read("grid.b2nd", "40:60, 60:80") == 7.0)
