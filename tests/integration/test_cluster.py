"""caterva on clustered brokers (issue 17), as real processes: the publisher on node A, the
subscriber on node B, of two Mosquitto brokers joined by a bridge and of two Aedes nodes
sharing Redis (tests/integration/clusters.py).

A node's last wills die with it: a Mosquitto bridge has nothing to forward once A is gone,
and Aedes publishes them from B only 3 to 7 heartbeats later (minutes by default), under A's
node id with B's message counter, so a subscriber connected all along to B may drop it as a
duplicate (Aedes 1.2). What the subscriber is told about a source on a lost node is therefore
stale either way, and the data plane must have the last word.
"""

from __future__ import annotations

import io
import os
import time

import blosc2
import httpx
import numpy as np
import pytest

from tests.integration.authkit import GRID, cli, demo_root, wait_root
from tests.integration.clusters import KINDS, start_cluster
from tests.integration.fakes import announce
from tests.integration.test_subscriber import event_stream, next_event, wait_until

NOTICED_WITHIN = 10.0  # s: offline without a read, probed every presence_ttl (2 s here)


@pytest.fixture
def clusters(tmp_path):
    """clusters(kind, heartbeat_ms=...) -> a started Cluster, closed after the test."""
    started = []

    def start(kind: str, **options):
        started.append(start_cluster(kind, tmp_path / "cluster", **options))
        return started[-1]

    yield start
    for cluster in started:
        cluster.close()


def read(http: httpx.Client, sel: str, path: str = "grid.b2nd") -> np.ndarray:
    r = http.get(f"/roots/demo/data/{path}", params={"sel": sel})
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content), allow_pickle=False)


# the fixtures' order is their teardown's, reversed: services stop before the cluster
@pytest.mark.parametrize("kind", KINDS)
def test_publisher_on_node_a_subscriber_on_node_b(kind, clusters, spawn, tmp_path):
    cluster = clusters(kind)
    pub, sub, http = demo_root(spawn, tmp_path, cluster.a, sub_broker=cluster.b)  # found, followed
    assert np.array_equal(read(http, "0:10, ::3"), GRID[0:10, ::3])

    events = event_stream(sub.url)
    blosc2.asarray(GRID * 2, urlpath=str(tmp_path / "twice.b2nd"), mode="w", chunks=(10, 10))
    os.replace(tmp_path / "twice.b2nd", tmp_path / "data" / "twice.b2nd")  # appears whole
    next_event(events, "create", timeout=10, path="twice.b2nd")
    assert np.array_equal(read(http, "...", "twice.b2nd"), GRID * 2)

    pub.kill()  # node A publishes its last will, over the bridge or through Redis
    wait_root(sub.url, "demo", online=False)


@pytest.mark.parametrize("kind", KINDS)
def test_node_a_lost_reads_go_on_while_the_publisher_serves(kind, clusters, spawn, tmp_path):
    cluster = clusters(kind, heartbeat_ms=200)  # Aedes: B publishes A's wills in 0.6-1.4 s
    pub, sub, http = demo_root(spawn, tmp_path, cluster.a, sub_broker=cluster.b)
    pub_id = httpx.get(f"{pub.url}/v1/health").json()["pub_id"]
    assert np.array_equal(read(http, "0:10, :"), GRID[0:10])  # chunks 0-3 cached from here on

    cluster.kill_a()
    cluster.wait_a_lost(pub_id)  # and on Aedes, B has published the (false) last will
    assert np.array_equal(read(http, "10:20, :"), GRID[10:20])  # uncached: from the publisher
    assert np.array_equal(read(http, "0:20, :"), GRID[0:20])

    # the publisher goes too: cached chunks are served, the rest fails at once and cleanly
    pub.kill()
    assert np.array_equal(read(http, "0:20, ::-1"), GRID[0:20, ::-1])
    started = time.monotonic()
    shown = cli("show", "demo/grid.b2nd[20:30, :]", "--sub", sub.url)
    assert shown.returncode == 4, (shown.stdout, shown.stderr)  # offline or unreachable
    assert "Traceback" not in shown.stderr and time.monotonic() - started < 10
    root = wait_root(sub.url, "demo", online=False)  # no longer routed to
    assert [s["learned"] for s in root["sources"]] == ["probe"]


@pytest.mark.parametrize("kind", KINDS)
def test_node_a_and_publisher_lost_noticed_without_a_read(kind, clusters, spawn, tmp_path):
    """Node A dies, and its last wills with it (Aedes at its default heartbeat publishes them
    minutes later), then the publisher: B still holds its "online", yet the subscriber, probing
    what it has not heard of for presence_ttl, marks it offline and serves cached chunks; and
    so it stays when node A comes back with that "online" saved (Mosquitto)."""
    cluster = clusters(kind)
    ttl = {"CATERVA_PRESENCE_TTL": "2s"}  # what was heard is checked this often
    pub, sub, http = demo_root(spawn, tmp_path, cluster.a, sub_broker=cluster.b, sub_env=ttl)
    assert np.array_equal(read(http, "0:10, :"), GRID[0:10])

    cluster.kill_a()
    pub.kill()
    root = wait_root(sub.url, "demo", timeout=NOTICED_WITHIN, online=False)
    assert [s["learned"] for s in root["sources"]] == ["probe"]
    assert httpx.get(f"{sub.url}/v1/health").json()["broker_connected"]  # B is fine
    assert np.array_equal(read(http, "0:10, :"), GRID[0:10])  # served from the cache
    uncached = http.get("/roots/demo/data/grid.b2nd", params={"sel": "20:30"})
    assert uncached.status_code == 503 and uncached.json()["error"]["code"] == "source_offline"
    if kind != "mosquitto-bridge":
        return
    cluster.restart_a()  # bridged again: A's saved retained "online" reaches B
    marker = "http://127.0.0.1:1"  # a message sent after them, to know they are in
    announce(cluster.a, "marker", "demo", marker, origin="marker")
    wait_until(lambda: any(s["url"] == marker for s in sources(sub.url)))
    assert [s["online"] for s in sources(sub.url) if s["pub_id"] != "marker"] == [False]


def sources(url: str) -> list[dict]:
    roots = httpx.get(f"{url}/v1/roots").json()["roots"]
    return next(r for r in roots if r["root"] == "demo")["sources"]
