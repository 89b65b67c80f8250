"""Signed roots against an attacker, with real brokers, a real publisher and subscriber: a fake
"mirror" on loopback that announces the root (as the finding did) can neither serve forged data
nor change the root; a key change is refused and reported until the admin trusts the new key;
a forged change event hides nothing.

The fake is a plain HTTP server speaking the source API, and a plain MQTT client announcing it:
on an open broker, and with broker logins under its own account and subtree.
"""

from __future__ import annotations

import io
import json
import threading
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import blosc2
import httpx
import numpy as np
import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from caterva.broker import access
from caterva.protocol import rest, topics
from caterva.protocol.messages import Announcement, Change, Status
from caterva.protocol.metadata import Manifest, chunk_digest
from caterva.protocol.seal import sign
from tests.conftest import free_port
from tests.integration.authkit import GRID, cli, demo_root, tiny_root
from tests.integration.test_subscriber import event_stream, next_event, wait_until

ACCOUNTS = {"alice": "alice-pass", "mallory": "mallory-pass", "reader": "reader-pass"}


class FakeSource:
    """A source API on loopback serving whatever manifest and chunks it is given."""

    def __init__(self) -> None:
        self.manifest = b""
        self.chunks: dict[tuple[str, int], bytes] = {}
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                fake.requests.append(url.path)
                if url.path.endswith("/manifest"):
                    return self.answer(fake.manifest, "application/json")
                prefix = "/v1/roots/demo/chunks/"
                if url.path.startswith(prefix):
                    path = unquote(url.path[len(prefix) :])
                    indices = rest.parse_indices(parse_qs(url.query)["i"][0])
                    frames = b"".join(
                        rest.frame_header(i, data, chunk_digest(data)) + data
                        for i in indices
                        for data in [fake.chunks[(path, i)]]
                    )
                    return self.answer(frames, rest.BATCH_TYPE)
                self.answer(
                    b'{"error": {"code": "not_found", "message": "no"}}', "application/json", 404
                )

            def answer(self, body: bytes, kind: str, status: int = 200):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def mqtt(port: int, user: str | None = None) -> paho.Client:
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv311
    )
    if user:
        client.username_pw_set(user, ACCOUNTS[user])
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert connected.wait(10)
    return client


def announce_fake(client: paho.Client, pub_id: str, url: str, origin: str) -> None:
    """What the attacker of the finding did: online, and a mirror of the origin's root."""
    client.publish(topics.status(pub_id), Status("online", "s1", url).to_bytes(), 1, True)
    announcement = Announcement(
        root="demo",
        url=url,
        session="s1",
        manifest_etag="x",
        datasets=2,
        origin=origin,
        hops=[origin, pub_id],
    )
    client.publish(topics.root(pub_id, "demo"), announcement.to_bytes(), 1, True).wait_for_publish(
        5
    )


def forged(real: Manifest, key, origin: str) -> tuple[Manifest, dict]:
    """The real manifest with grid.b2nd's chunks replaced by others of the same layout, digests
    and etags all correct, signed by ``key``."""
    fake = blosc2.asarray(np.full_like(GRID, 666.0), chunks=(10, 10), blocks=(5, 5))
    chunks = {("grid.b2nd", i): fake.schunk.get_chunk(i) for i in range(fake.schunk.nchunks)}
    datasets = [
        replace(d, etag="", digests=[chunk_digest(chunks[(d.path, i)]) for i in range(d.nchunks)])
        if d.path == "grid.b2nd"
        else d
        for d in real.datasets
    ]
    manifest = Manifest("demo", datasets)
    seal = sign(key, root="demo", origin=origin, version=99, manifest_etag=manifest.etag)
    return replace(manifest, seal=seal), chunks


def logged(service) -> str:
    """A service's log with line wrapping undone."""
    return " ".join(service.log_path.read_text().split())


def read_grid(sub_url: str) -> np.ndarray:
    r = httpx.get(f"{sub_url}/v1/roots/demo/data/grid.b2nd", timeout=30)
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content))


@pytest.fixture(
    params=[
        pytest.param(
            (engine, logins),
            id=f"{engine}-{'logins' if logins else 'open'}",
            marks=[pytest.mark.mosquitto] if engine == "mosquitto" else [],
        )
        for engine in ("amqtt", "mosquitto")
        for logins in (False, True)
    ]
)
def lan(request, spawn, tmp_path):
    """A broker (open, or with logins), the origin publisher of root demo, a subscriber, and
    the attacker's MQTT connection (its own account when logins are on)."""
    engine, logins = request.param
    port = free_port()
    args = ["bro", "--engine", engine, "--port", str(port), "--statedir", str(tmp_path / "bro")]
    if logins:
        passwords = tmp_path / "passwords"
        passwords.write_text(
            "".join(f"{u}:{access.hash_password(p)}\n" for u, p in ACCOUNTS.items())
        )
        args += ["--password-file", str(passwords)]
    spawn(*args)

    def broker(user: str) -> str:
        return (
            f"mqtt://{user}:{ACCOUNTS[user]}@127.0.0.1:{port}"
            if logins
            else f"mqtt://127.0.0.1:{port}"
        )

    pub = spawn(
        "pub",
        "demo",
        str(tiny_root(tmp_path / "data")),
        "--broker",
        broker("alice"),
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "pub"),
    )
    sub = spawn(
        "sub",
        "--broker",
        broker("reader"),
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "sub"),
    )
    fake = FakeSource()
    attacker = mqtt(port, "mallory" if logins else None)
    yield pub, sub, fake, attacker, ("mallory" if logins else "fake")
    attacker.loop_stop()
    fake.close()


def test_a_fake_mirror_with_its_own_signed_manifest_is_refused(lan):
    pub, sub, fake, attacker, fake_id = lan
    health = httpx.get(f"{pub.url}/v1/health").json()
    origin, key = health["pub_id"], health["key"]
    real = Manifest.from_bytes(httpx.get(f"{pub.url}{rest.manifest('demo')}").content)
    manifest, fake.chunks = forged(real, Ed25519PrivateKey.generate(), origin)
    fake.manifest = manifest.to_bytes()
    announce_fake(attacker, fake_id, fake.url, origin)
    # the fake is a mirror on the subscriber's own broker: it ranks above the origin
    wait_until(lambda: len(httpx.get(f"{sub.url}/v1/roots").json()["roots"][0]["sources"]) == 2)

    assert httpx.put(f"{sub.url}/v1/roots/demo/follow", timeout=30).status_code == 200
    assert np.array_equal(read_grid(sub.url), GRID)
    assert fake.requests == [rest.manifest("demo")]  # asked once, refused, never read from
    root = httpx.get(f"{sub.url}/v1/roots").json()["roots"][0]
    assert root["key"] == key and root["source"] == pub.url
    assert "not reading demo from" in logged(sub)


def test_a_fake_mirror_passing_the_real_manifest_on_cannot_forge_a_chunk(spawn, tmp_path, broker):
    pub = spawn(
        "pub",
        "demo",
        str(tiny_root(tmp_path / "data")),
        "--broker",
        broker,
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "pub"),
    )
    sub = spawn(
        "sub", "--broker", broker, "--http", "127.0.0.1:0", "--statedir", str(tmp_path / "sub")
    )
    origin = httpx.get(f"{pub.url}/v1/health").json()["pub_id"]
    fake = FakeSource()
    fake.manifest = httpx.get(f"{pub.url}{rest.manifest('demo')}").content  # signed, genuine
    real = Manifest.from_bytes(fake.manifest)
    _, forged_chunks = forged(real, Ed25519PrivateKey.generate(), origin)
    fake.chunks = forged_chunks
    attacker = mqtt(int(broker.rsplit(":", 1)[1]))
    try:
        status = Status("online", "s1", fake.url).to_bytes()
        attacker.publish(topics.status("fake"), status, 1, True)
        announcement = Announcement(
            root="demo",
            url=fake.url,
            session="s1",
            manifest_etag=real.etag,
            datasets=2,
            origin=origin,
            hops=[origin, "fake"],
        )
        attacker.publish(
            topics.root("fake", "demo"), announcement.to_bytes(), 1, True
        ).wait_for_publish(5)
        wait_until(
            lambda: httpx.get(f"{sub.url}/v1/roots").json()["roots"][0]["source_id"] == "fake"
        )
        assert httpx.put(f"{sub.url}/v1/roots/demo/follow", timeout=30).status_code == 200
        assert np.array_equal(read_grid(sub.url), GRID)  # from the origin, after one try
        assert sum("/chunks/" in r for r in fake.requests) == 1
        assert np.array_equal(read_grid(sub.url), GRID)
        assert sum("/chunks/" in r for r in fake.requests) == 1  # never again
    finally:
        attacker.loop_stop()
        fake.close()


def test_a_key_change_is_refused_and_reported_until_the_admin_trusts_it(spawn, tmp_path):
    broker = spawn("bro", "--port", str(free_port()), "--statedir", str(tmp_path / "b")).url
    data = tiny_root(tmp_path / "data")
    args = (
        "pub",
        "demo",
        str(data),
        "--broker",
        broker,
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "pub"),
    )
    pub = spawn(*args)
    old_key = httpx.get(f"{pub.url}/v1/health").json()["key"]
    sub = spawn(
        "sub", "--broker", broker, "--http", "127.0.0.1:0", "--statedir", str(tmp_path / "sub")
    )
    http = httpx.Client(base_url=f"{sub.url}/v1", timeout=30)
    wait_until(lambda: http.get("/roots").json()["roots"])
    assert http.put("/roots/demo/follow").status_code == 200
    assert http.get("/roots").json()["roots"][0]["key"] == old_key  # trusted on first use

    pub.stop()
    (tmp_path / "pub" / "demo" / "signing-key").unlink()  # the key is lost: a new one
    pub = spawn(*args)
    new_key = httpx.get(f"{pub.url}/v1/health").json()["key"]
    assert new_key != old_key
    blosc2.asarray(np.arange(10.0), urlpath=str(data / "late.b2nd"), mode="w")
    wait_until(lambda: http.get("/roots").json()["roots"][0]["problem"])
    root = http.get("/roots").json()["roots"][0]
    assert f"caterva trust demo {new_key}" in root["problem"] and root["key"] == old_key
    assert root["datasets"] == 2  # late.b2nd is not taken from a manifest signed by new_key
    assert "signed by a key other than the one trusted" in logged(sub)
    shown = cli("roots", "--json", "--sub", sub.url)
    [listed] = [r for r in json.loads(shown.stdout)["roots"] if r["root"] == "demo"]
    assert listed["key"] == old_key and f"caterva trust demo {new_key}" in listed["problem"]

    listed = cli("trust", "--statedir", str(tmp_path / "sub"), "--json")
    assert json.loads(listed.stdout)["keys"][0]["key"] == old_key
    done = cli("trust", "demo", new_key, "--statedir", str(tmp_path / "sub"))
    assert done.returncode == 0, done.stderr
    events = event_stream(sub.url)
    blosc2.asarray(np.arange(5.0), urlpath=str(data / "later.b2nd"), mode="w")
    next_event(events, "create", path="later.b2nd", timeout=10)
    root = http.get("/roots").json()["roots"][0]
    assert root["key"] == new_key and root["problem"] is None and root["datasets"] == 4
    bad = cli("trust", "demo", "ed25519:nonsense", "--statedir", str(tmp_path / "sub"))
    assert (bad.returncode, bad.stderr.count("\n")) == (2, 1), bad.stderr


def test_a_forged_delete_event_hides_nothing(spawn, tmp_path, broker):
    pub, sub, http = demo_root(spawn, tmp_path, broker)
    origin = httpx.get(f"{pub.url}/v1/health").json()["pub_id"]
    events = event_stream(sub.url)
    attacker = mqtt(int(broker.rsplit(":", 1)[1]))
    try:
        change = Change(
            root="demo",
            path="grid.b2nd",
            op="delete",
            session="forged",
            seq=1,
            manifest_etag="0" * 32,
        )
        attacker.publish(topics.changes(origin, "demo"), change.to_bytes(), 1).wait_for_publish(5)
    finally:
        attacker.loop_stop()
    # a real change after it: its event is the barrier (events of a root come in order)
    blosc2.asarray(np.arange(3.0), urlpath=str(tmp_path / "data" / "late.b2nd"), mode="w")
    seen = []
    while not any(e.get("path") == "late.b2nd" for e in seen):
        seen.append(events.get(timeout=10))
    assert [e for e in seen if e.get("path") == "grid.b2nd"] == []
    assert http.get("/roots/demo/info/grid.b2nd").status_code == 200
    assert np.array_equal(read_grid(sub.url), GRID)


def test_resyncs_by_delta_end_where_a_full_manifest_does(spawn, tmp_path, broker):
    """The subscriber asks for what changed since its manifest (a signed delta, gzipped) and,
    applying it, holds exactly the publisher's manifest: creates, updates, deletes, renames."""
    data = tiny_root(tmp_path / "data")
    pub, sub, http = demo_root(spawn, tmp_path, broker, data, "--access-log")
    events = event_stream(sub.url)
    blosc2.asarray(np.arange(7.0), urlpath=str(data / "a.b2nd"), mode="w")
    next_event(events, "create", path="a.b2nd", timeout=10)
    blosc2.asarray(np.arange(9.0), urlpath=str(data / "a.b2nd"), mode="w")
    next_event(events, "update", path="a.b2nd", timeout=10)
    (data / "notes.txt").rename(data / "renamed.txt")
    next_event(events, "create", path="renamed.txt", timeout=10)
    (data / "a.b2nd").unlink()
    next_event(events, "delete", path="a.b2nd", timeout=10)

    full = Manifest.from_bytes(httpx.get(f"{pub.url}{rest.manifest('demo')}").content)
    held = Manifest.from_bytes(http.get("/roots/demo/manifest").content)
    assert {d.path: d.etag for d in held.datasets} == {d.path: d.etag for d in full.datasets}
    assert held.etag == full.etag and held.seal == full.seal
    assert "manifest?since=" in logged(pub)  # each resync asked for a delta
    delta = httpx.get(f"{pub.url}{rest.manifest('demo')}", params={"since": held.etag})
    assert delta.json()["since"] == held.etag and delta.json()["datasets"] == []
