"""Republishing on a LAN, with real processes: an origin publisher on an upstream broker, a
mirror A that follows it there and announces on the LAN's broker, subscribers on the LAN.

    upstream broker (amqtt)          LAN broker (Mosquitto when installed, else amqtt)
      origin publisher   <--REST--  mirror A  <--REST--  subscribers B (LAN + upstream), C (LAN)
"""

from __future__ import annotations

import io
import queue
import shutil
import subprocess
import sys
import threading
import time

import blosc2
import httpx
import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from caterva.broker.mosquitto import SBIN
from caterva.mqtt import BrokerURL
from caterva.protocol import rest, topics
from tests.conftest import ROOT, free_port
from tests.integration.authkit import demo_root
from tests.integration.source_contract import SourceContract
from tests.integration.test_subscriber import GRID, event_stream, make_root, next_event

LAN_ENGINE = "mosquitto" if shutil.which("mosquitto", path=":".join(SBIN)) else "amqtt"


class Node:
    """A subscriber process (mirror or not) and a client of its API."""

    def __init__(self, service) -> None:
        self.service = service
        self.url = service.url
        self.http = httpx.Client(base_url=self.url + "/v1", timeout=30)

    @property
    def pub_id(self) -> str:
        return self.http.get("/health").json()["mirror"]["pub_id"]

    def root(self) -> dict | None:
        listing = self.http.get("/roots").json()["roots"]
        return next((r for r in listing if r["root"] == "demo"), None)

    def wait_root(self, timeout: float = 10, **want) -> dict:
        """Poll /v1/roots until root demo has the wanted fields (announcements are hints that
        arrive when they arrive: this is the readiness signal the API offers)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            root = self.root()
            if root and all(root.get(k) == v for k, v in want.items()):
                return root
            time.sleep(0.02)
        raise AssertionError(f"{self.url}: root demo never had {want}; last {root}")

    def follow(self) -> None:
        assert self.http.put("/roots/demo/follow").status_code == 200

    def get(self, sel: str, path: str = "grid.b2nd") -> httpx.Response:
        return self.http.get(f"/roots/demo/data/{path}", params={"sel": sel})

    def read(self, sel: str = "...", path: str = "grid.b2nd") -> np.ndarray:
        r = self.get(sel, path)
        assert r.status_code == 200, r.text
        return np.load(io.BytesIO(r.content), allow_pickle=False)

    def stats(self) -> dict:
        return self.http.get("/stats").json()

    def events(self) -> queue.Queue:
        return event_stream(self.url)


class Lan:
    """Two brokers, the origin publishing ``data/`` as root demo upstream, mirror A and
    subscriber B (started together: each start costs about a second of imports)."""

    def __init__(self, spawn, tmp, *, a: bool = True, b: bool = True) -> None:
        self.spawn, self.tmp = spawn, tmp
        up = spawn("bro", "--port", str(free_port()), "--statedir", str(tmp / "b-up"), wait=False)
        lan = spawn(
            "bro",
            "--engine",
            LAN_ENGINE,
            "--port",
            str(free_port()),
            "--statedir",
            str(tmp / "b-lan"),
            wait=False,
        )
        self.upstream, self.lan = up.wait_ready(), lan.wait_ready()
        self.data = tmp / "data"
        make_root(self.data)
        self.origin = spawn(
            "pub",
            "demo",
            str(self.data),
            "--broker",
            self.upstream,
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(tmp / "pub"),
            wait=False,
        )
        self.a_port = free_port()
        pending = {
            "a": self.start_mirror("a", wait=False) if a else None,
            "b": self.start_sub("b", self.lan, self.upstream, wait=False) if b else None,
        }
        self.origin.wait_ready()
        self.a, self.b = (Node(s) if s and s.wait_ready() else None for s in pending.values())
        self.origin_id = httpx.get(self.origin.url + "/v1/health").json()["pub_id"]

    def start_mirror(
        self,
        name: str = "a",
        *brokers: str,
        port: int | None = None,
        extra: tuple[str, ...] = (),
        wait: bool = True,
    ):
        """Mirror A by default: follows upstream, announces on the LAN, on a fixed port."""
        if not brokers:
            brokers, extra = (self.upstream,), ("--republish-broker", self.lan, *extra)
        service = self.spawn(
            "sub",
            *(f"--broker={b}" for b in brokers),
            "--republish",
            *extra,
            "--http",
            f"127.0.0.1:{port or self.a_port}",
            "--statedir",
            str(self.tmp / name),
            wait=wait,
        )
        return Node(service) if wait else service

    def start_sub(self, name: str, *brokers: str, wait: bool = True):
        service = self.spawn(
            "sub",
            *(f"--broker={b}" for b in brokers),
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(self.tmp / name),
            wait=wait,
        )
        return Node(service) if wait else service

    def served(self, path: str = "grid.b2nd") -> int:
        return httpx.get(self.origin.url + "/v1/stats").json()["datasets"].get(path, 0)

    def b_reads_through_a(self) -> None:
        self.a.wait_root(online=True)
        self.a.follow()
        self.b.wait_root(online=True, source=self.a.url)
        self.b.follow()


@pytest.fixture
def lan(spawn, tmp_path) -> Lan:
    return Lan(spawn, tmp_path)


def test_b_reads_through_a_and_the_origin_serves_each_chunk_once(lan):
    lan.b_reads_through_a()
    root = lan.b.root()
    a_id = lan.a.pub_id
    assert (root["source_id"], root["origin"], root["hops"]) == (
        a_id,
        lan.origin_id,
        [lan.origin_id, a_id],
    )
    assert np.array_equal(lan.b.read(), GRID)
    assert lan.served() == 12
    assert (lan.a.stats()["misses"], lan.b.stats()["misses"]) == (12, 12)

    c = lan.start_sub("c", lan.lan)  # the LAN only: it does not even see the origin
    c.wait_root(online=True, source=lan.a.url)
    c.follow()
    assert np.array_equal(c.read("5:55, ::3"), GRID[5:55, ::3])
    assert lan.served() == 12  # C cost the origin nothing
    assert (lan.a.stats()["hits"], lan.a.stats()["misses"]) == (12, 12)

    shown = subprocess.run(
        [sys.executable, "-m", "caterva", "roots", "--sub", lan.b.url],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={"CATERVA_CONFIG": "/nonexistent", "PATH": ""},
    )
    assert f"{lan.a.url} via {a_id} (2 hops)" in shown.stdout, shown.stderr


def test_with_the_origin_gone_b_reads_what_a_holds_and_gets_503_for_the_rest(lan):
    lan.a.wait_root(online=True)
    lan.a.follow()
    assert np.array_equal(lan.a.read("0:20, 0:40"), GRID[0:20, 0:40])  # A holds chunks 0, 1
    lan.b.wait_root(online=True, source=lan.a.url)
    lan.b.follow()
    lan.origin.stop()
    lan.a.wait_root(online=False)  # A knows its upstream is gone, and still serves
    assert np.array_equal(lan.b.read("0:20, 0:40"), GRID[0:20, 0:40])
    started = time.monotonic()
    r = lan.b.get("40:60, 60:80")
    assert time.monotonic() - started < 2
    assert r.status_code == 503 and r.json()["error"]["code"] == "source_offline"


def test_a_change_reaches_b_within_two_seconds_refetching_only_that_chunk(lan):
    lan.b_reads_through_a()
    assert np.array_equal(lan.b.read(), GRID)
    events = lan.b.events()
    started = time.monotonic()
    arr = blosc2.open(str(lan.data / "grid.b2nd"), mode="a")
    arr[0:20, 0:20] = -1.0  # exactly chunk 0
    event = next_event(events, "update", path="grid.b2nd")
    assert time.monotonic() - started < 2.0
    assert event["chunks"] == [0]
    expected = GRID.copy()
    expected[0:20, 0:20] = -1.0
    assert np.array_equal(lan.b.read(), expected)
    assert lan.served() == 13
    assert (lan.a.stats()["misses"], lan.b.stats()["misses"]) == (13, 13)


def test_b_falls_back_to_the_origin_while_a_is_away_then_returns_to_a(lan):
    lan.b_reads_through_a()
    a_id = lan.a.pub_id
    events = lan.b.events()
    assert np.array_equal(lan.b.read("0:20"), GRID[0:20])  # chunks 0-3, through A
    lan.a.service.stop()  # a clean stop says offline
    next_event(events, "source", url=lan.origin.url)
    assert np.array_equal(lan.b.read("20:40"), GRID[20:40])
    assert lan.served() == 8  # 4 through A before, 4 straight to B now

    # same state directory (pub_id, cache) and port, announced under another name
    advertised = f"http://localhost:{lan.a_port}"
    lan.a = lan.start_mirror(extra=("--advertise", advertised + "/"))
    next_event(events, "source", url=advertised, timeout=10)
    assert lan.b.root()["source_id"] == a_id
    assert np.array_equal(lan.b.read("40:60"), GRID[40:60])
    assert lan.a.stats()["misses"] == 4 and lan.served() == 12


class Announcements:
    """Counts live root announcements on a broker (an MQTT client of the test's own)."""

    def __init__(self, url: str) -> None:
        broker = BrokerURL.parse(url)
        self.seen: list[tuple[float, str]] = []
        ready = threading.Event()
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        client.on_connect = lambda c, *_: c.subscribe(f"{topics.PREFIX}/pub/+/roots/demo", 1)
        client.on_subscribe = lambda *_: ready.set()
        client.on_message = lambda c, u, m: self.seen.append((time.monotonic(), m.topic))
        client.connect(broker.host, broker.port)
        client.loop_start()
        self.client = client
        assert ready.wait(10)

    def wait_quiet(self, quiet: float, timeout: float) -> int:
        """Wait until none came for ``quiet`` seconds (from now, at least); how many came."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            last = max(self.seen[-1][0], started) if self.seen else started
            if time.monotonic() - last >= quiet:
                return len(self.seen)
            time.sleep(0.05)
        raise AssertionError(f"announcements never stopped: {len(self.seen)} in {timeout} s")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_two_mirrors_that_follow_each_other_do_not_loop(spawn, tmp_path):
    lan = Lan(spawn, tmp_path, a=False, b=False)
    pa, pd = free_port(), free_port()
    pending = [
        lan.start_mirror(
            name,
            lan.lan,
            lan.upstream,
            port=port,
            wait=False,
            extra=("--prefer", f"http://127.0.0.1:{other}"),
        )
        for name, port, other in (("a", pa, pd), ("d", pd, pa))
    ]
    a, d = (Node(s) for s in pending if s.wait_ready())
    watch = Announcements(lan.lan)
    try:
        for node in (a, d):
            node.wait_root(online=True)
        both = [threading.Thread(target=node.follow) for node in (a, d)]  # at the same moment
        for t in both:
            t.start()
        for t in both:
            t.join()
        count = watch.wait_quiet(quiet=1.0, timeout=10)
    finally:
        watch.close()
    assert count <= 12
    ra, rd = a.root(), d.root()
    assert not (ra["source"] == d.url and rd["source"] == a.url)
    assert a.pub_id not in ra["hops"] and d.pub_id not in rd["hops"]
    assert np.array_equal(a.read(), GRID) and np.array_equal(d.read(), GRID)
    # the backstop: a request that already went through a mirror is refused there at once
    r = a.http.get(rest.chunk("demo", "grid.b2nd", 0), headers={rest.VIA_HEADER: a.pub_id})
    assert r.status_code == 503 and r.json()["error"]["code"] == "source_offline"


class TestMirrorSource(SourceContract):
    """A republishing subscriber holds to the source contract (source_contract.py)."""

    KEEPS_HISTORY = False  # a mirror answers since= with the full manifest

    def start(self, spawn, tmp, data):
        broker = spawn("bro", "--port", str(free_port()), "--statedir", str(tmp / "broker")).url
        pub, sub, http = demo_root(spawn, tmp, broker, data, sub_args=("--republish",))
        http.close()
        return {"source": sub.url, "origin": pub.url}

    def test_a_mirror_serves_what_its_origin_serves(self, served):
        mirror, origin = served.client, httpx.Client(base_url=served.urls["origin"], timeout=10)
        manifests = [c.get(rest.manifest("demo")) for c in (origin, mirror)]
        assert manifests[0].headers["etag"] == manifests[1].headers["etag"]
        assert manifests[0].json()["datasets"] == manifests[1].json()["datasets"]
        assert manifests[0].json()["seal"] == manifests[1].json()["seal"]
        for i in (0, 3, 5):
            got = [c.get(rest.chunk("demo", "a.b2nd", i)) for c in (origin, mirror)]
            assert got[0].content == got[1].content
            assert got[0].headers[rest.DIGEST_HEADER] == got[1].headers[rest.DIGEST_HEADER]
