"""Liveness from both planes, with real processes: a forged or stale presence message (an
"online" for a URL that does not answer, an "offline" for a source that does) never makes a
read fail while a real source answers."""

from __future__ import annotations

import io

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
