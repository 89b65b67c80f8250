"""Liveness from both planes, with real processes: a forged or stale presence message (an
"online" for a URL that does not answer, an "offline" for a source that does) never makes a
read fail while a real source answers."""

from __future__ import annotations

import io
import time

import httpx
import numpy as np

from caterva.protocol import topics
from caterva.protocol.messages import Status
from tests.conftest import free_port
from tests.integration.authkit import GRID, cli, demo_root
from tests.integration.fakes import Silent, announce, mqtt
from tests.integration.test_subscriber import wait_until


def forge_offline(broker: str, pub_id: str, session: str, url: str) -> None:
    """Retain an "offline" status for ``pub_id``'s session, as a late last will would."""
    with mqtt(broker) as client:
        forged = Status("offline", session, url).to_bytes()
        client.publish(topics.status(pub_id), forged, qos=1, retain=True).wait_for_publish(10)


def test_forged_presence_never_fails_a_read_while_a_source_answers(spawn, tmp_path):
    broker = spawn("bro", "--port", str(free_port()), "--statedir", str(tmp_path / "b")).url
    pub, sub, http = demo_root(spawn, tmp_path, broker, sub_env={"CATERVA_SOURCE_TIMEOUT": "1s"})
    health = httpx.get(f"{pub.url}/v1/health").json()

    def read(rows: str) -> np.ndarray:
        r = http.get("/roots/demo/data/grid.b2nd", params={"sel": f"{rows}, :"})
        assert r.status_code == 200, r.text
        return np.load(io.BytesIO(r.content))

    # an "online" mirror (outranking the origin on our broker) whose URL never answers
    dead = Silent()
    try:
        announce(broker, "ghost", "demo", dead.url, origin=health["pub_id"])
        wait_until(lambda: http.get("/roots").json()["roots"][0]["source_id"] == "ghost")
        assert np.array_equal(read("0:10"), GRID[0:10])
    finally:
        dead.close()

    # an "offline" for the origin, with its own session (read from its retained status)
    forge_offline(broker, health["pub_id"], health["session"], pub.url)
    wait_until(lambda: not http.get("/roots").json()["roots"][0]["online"])
    assert np.array_equal(read("10:20"), GRID[10:20])  # uncached: read from the origin
    root = http.get("/roots").json()["roots"][0]
    assert root["online"] and root["source"] == pub.url


def test_a_stale_mirror_never_fails_a_follow_while_the_origin_answers(spawn, tmp_path):
    """A retained "online" mirror whose URL no longer answers (it outranks the origin on our
    broker), and the origin said offline (a last will that outlived it, a forged one):
    `caterva follow` reads the manifest from the origin, which answers; exit 0."""
    broker = spawn("bro", "--port", str(free_port()), "--statedir", str(tmp_path / "b")).url
    pub, sub, http = demo_root(spawn, tmp_path, broker, follow=False)
    health = httpx.get(f"{pub.url}/v1/health").json()
    announce(broker, "ghost", "demo", f"http://127.0.0.1:{free_port()}", origin=health["pub_id"])
    forge_offline(broker, health["pub_id"], health["session"], pub.url)
    wait_until(lambda: http.get("/roots").json()["roots"][0]["source_id"] == "ghost")
    done = cli("follow", "demo", "--sub", sub.url)
    assert done.returncode == 0, done.stderr
    assert "unreachable" not in done.stdout + done.stderr
    assert http.get("/roots").json()["roots"][0]["followed"]


def reader(http: httpx.Client):
    def read(rows: str) -> httpx.Response:
        return http.get("/roots/demo/data/grid.b2nd", params={"sel": f"{rows}, :"})

    return read


def sources_of(http: httpx.Client) -> list[dict]:
    return http.get("/roots").json()["roots"][0]["sources"]


def source_of(http: httpx.Client) -> dict:
    """The publisher's entry (the first announced)."""
    return next(s for s in sources_of(http) if s["pub_id"] != "marker")


def assert_stale_cache_served_and_the_rest_offline(read) -> None:
    cached = read("0:10")
    assert cached.status_code == 200, cached.text
    assert np.array_equal(np.load(io.BytesIO(cached.content)), GRID[0:10])
    uncached = read("20:30")
    assert uncached.status_code == 503, uncached.text
    assert uncached.json()["error"]["code"] == "source_offline"


def test_with_its_broker_gone_a_subscriber_learns_liveness_by_probe(spawn, tmp_path):
    """Our only broker dies (the publisher's last will with it): the publisher is probed over
    HTTP, so reads go on; then the publisher dies too: offline within presence_ttl, cached
    chunks served, uncached reads fail as offline."""
    broker = spawn("bro", "--port", str(free_port()), "--statedir", str(tmp_path / "b"))
    ttl = {"CATERVA_PRESENCE_TTL": "2s"}  # what was heard is checked this often
    pub, sub, http = demo_root(spawn, tmp_path, broker.url, sub_env=ttl)
    read = reader(http)
    assert read("0:10").status_code == 200
    broker.kill()
    wait_until(lambda: not httpx.get(f"{sub.url}/v1/health").json()["broker_connected"])
    wait_until(lambda: source_of(http)["learned"] == "probe")
    assert source_of(http)["online"]
    assert read("10:20").status_code == 200  # uncached, from the publisher
    pub.kill()
    wait_until(lambda: not source_of(http)["online"], timeout=15)
    offline = source_of(http)
    assert offline["learned"] == "probe" and time.time() - 15 < offline["since"] < time.time()
    assert_stale_cache_served_and_the_rest_offline(read)
