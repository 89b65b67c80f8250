"""``caterva bro --password-file`` on each engine: only accounts connect, and each may publish
only under ``caterva/v1/pub/<its username>/`` (plus discover). Checked with plain paho clients
and with a real publisher and subscriber.

With MQTT 3.1.1 a broker drops a denied publish silently, so "never arrives" is checked with a
barrier: a legitimate message published after the forged ones on the same connection arrives
after them if they arrive at all (MQTT keeps one client's messages in order).
"""

from __future__ import annotations

import queue
import socket
import uuid

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from caterva.broker import access
from caterva.protocol.messages import Announcement
from tests.conftest import free_port
from tests.integration.authkit import tiny_root, wait_root

ENGINES = ["amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto)]
ACCOUNTS = {"alice": "alice-pass", "bob": "bob-pass", "reader": "reader-pass"}


class Mqtt:
    """A paho client whose connection result and messages are queues."""

    def __init__(
        self,
        port: int,
        user: str | None = None,
        password: str | None = None,
        will: str | None = None,
    ) -> None:
        self.c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"t-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,
        )
        if user:
            self.c.username_pw_set(user, password)
        if will:
            self.c.will_set(will, b"forged will", qos=1, retain=True)
        self.result: queue.Queue = queue.Queue()
        self.messages: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.seen: list = []  # every message `until` consumed, in order
        self.c.on_connect = lambda cl, ud, flags, rc, props: self.result.put(rc)
        self.c.on_disconnect = lambda cl, ud, flags, rc, props: self.result.put(rc)
        self.c.on_message = lambda cl, ud, msg: self.messages.put(msg)
        self.c.on_subscribe = lambda cl, ud, mid, rcs, props: self.subacks.put(rcs)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.rc = self.result.get(timeout=10)

    @property
    def connected(self) -> bool:
        return not self.rc.is_failure

    def subscribe(self, pattern: str) -> None:
        self.c.subscribe(pattern, qos=1)
        (rc,) = self.subacks.get(timeout=5)
        assert not rc.is_failure, f"subscribing to {pattern} was refused: {rc}"

    def publish(self, topic: str, payload: bytes, retain: bool = True) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain)

    def until(self, topic: str, timeout: float = 10) -> list[str]:
        """Topics received up to and including the first message on ``topic``."""
        seen = []
        while True:
            msg = self.messages.get(timeout=timeout)
            self.seen.append(msg)
            seen.append(msg.topic)
            if msg.topic == topic:
                return seen

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture(params=ENGINES)
def secured(request, spawn, tmp_path):
    """A broker requiring logins; alice's password given plain, bob's already hashed."""
    passwords = tmp_path / "passwords"
    passwords.write_text(
        "# MQTT accounts\n"
        f"alice:{ACCOUNTS['alice']}\n"
        f"bob:{access.hash_password(ACCOUNTS['bob'])}\n"
        f"reader:{ACCOUNTS['reader']}\n"
    )
    port = free_port()
    spawn(
        "bro",
        "--engine",
        request.param,
        "--port",
        str(port),
        "--statedir",
        str(tmp_path / "bro"),
        "--password-file",
        str(passwords),
    )
    opened: list[Mqtt] = []

    def connect(user=None, password=None, will=None) -> Mqtt:
        client = Mqtt(port, user, password or ACCOUNTS.get(user or ""), will)
        opened.append(client)
        return client

    connect.port = port
    yield connect
    for client in opened:
        client.close()


def test_only_accounts_with_the_right_password_connect(secured):
    assert not secured().connected  # anonymous
    assert not secured("alice", "bob-pass").connected
    assert not secured("mallory", "alice-pass").connected
    assert secured("alice").connected and secured("bob").connected


def test_a_publisher_cannot_announce_in_another_publishers_subtree(secured):
    reader = secured("reader")
    reader.subscribe("caterva/v1/#")
    alice = secured("alice")
    forged = [
        "caterva/v1/pub/bob/roots/demo",
        "caterva/v1/pub/bob/status",
        "caterva/v1/roots/demo/changes",
        "caterva/v1/pub/alicex/roots/demo",
    ]
    for topic in forged:
        alice.publish(topic, b'{"forged": true}')
    alice.publish("caterva/v1/discover", b"{}", retain=False)  # everyone may ask
    alice.publish("caterva/v1/pub/alice/roots/barrier", b"{}")
    seen = reader.until("caterva/v1/pub/alice/roots/barrier")
    assert seen == ["caterva/v1/discover", "caterva/v1/pub/alice/roots/barrier"]

    # nor was anything forged retained: a newcomer gets alice's barrier, nothing of bob's
    newcomer = secured("bob")
    newcomer.subscribe("caterva/v1/pub/+/roots/+")
    alice.publish("caterva/v1/pub/alice/roots/barrier2", b"{}")
    seen = newcomer.until("caterva/v1/pub/alice/roots/barrier2")
    assert not [t for t in seen if "/pub/bob/" in t or "/pub/alicex/" in t], seen


def test_a_real_publisher_announces_under_its_username_only(secured, spawn, tmp_path):
    broker = f"mqtt://127.0.0.1:{secured.port}"
    data = tiny_root(tmp_path / "data")
    wrong = spawn(
        "pub",
        "demo",
        str(data),
        "--broker",
        broker,
        "--broker-user",
        "alice",
        "--pub-id",
        "bob",
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "p0"),
        env={"CATERVA_BROKER_PASSWORD": ACCOUNTS["alice"]},
        wait=False,
    )
    pub = spawn(
        "pub",
        "demo",
        str(data),
        "--broker",
        broker,
        "--broker-user",
        "alice",
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "p"),
        env={"CATERVA_BROKER_PASSWORD": ACCOUNTS["alice"]},
        wait=False,
    )
    sub = spawn(
        "sub",
        "--broker",
        f"mqtt://reader:{ACCOUNTS['reader']}@127.0.0.1:{secured.port}",
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "s"),
        wait=False,
    )
    assert wrong.proc.wait(30) == 2
    assert "differs from the MQTT username" in wrong.log_path.read_text()
    pub_url, sub_url = pub.wait_ready(), sub.wait_ready()
    assert httpx.get(f"{pub_url}/v1/health").json()["pub_id"] == "alice"
    root = wait_root(sub_url, "demo")
    assert root["source"] == pub_url and root["origin"] == "alice"
    assert httpx.put(f"{sub_url}/v1/roots/demo/follow").status_code == 200


def test_a_last_will_outside_the_own_subtree_never_arrives(secured):
    """A will is a publish the broker makes later, for the client: it must obey the same rule.
    amqtt checks no will itself, so ours refuses such a connection; Mosquitto accepts it and
    drops the will when it would publish it."""
    reader = secured("reader")
    reader.subscribe("caterva/v1/#")
    forger = secured("alice", will="caterva/v1/pub/bob/status")
    if forger.connected:
        # drop without DISCONNECT: the broker publishes the will, or would
        forger.c.socket().shutdown(socket.SHUT_RDWR)
    secured("alice").publish("caterva/v1/pub/alice/roots/barrier", b"{}")
    assert reader.until("caterva/v1/pub/alice/roots/barrier") == [
        "caterva/v1/pub/alice/roots/barrier"
    ]


def test_a_mirror_announces_under_its_username(secured, spawn, tmp_path):
    """A republishing subscriber names itself after its MQTT account, so the ACL lets its
    announcements through (a random id would be dropped silently)."""
    port = secured.port
    data = tiny_root(tmp_path / "data")
    spawn(
        "pub",
        "demo",
        str(data),
        "--broker",
        f"mqtt://127.0.0.1:{port}",
        "--broker-user",
        "alice",
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "p"),
        env={"CATERVA_BROKER_PASSWORD": ACCOUNTS["alice"]},
    )
    mirror = spawn(
        "sub",
        "--republish",
        "--broker",
        f"mqtt://bob:{ACCOUNTS['bob']}@127.0.0.1:{port}",
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "m"),
    )
    wait_root(mirror.url, "demo")
    assert httpx.put(f"{mirror.url}/v1/roots/demo/follow").status_code == 200
    reader = secured("reader")
    reader.subscribe("caterva/v1/pub/bob/roots/demo")
    reader.until("caterva/v1/pub/bob/roots/demo")  # amqtt may also hand over others' retained
    message = next(m for m in reader.seen if m.topic == "caterva/v1/pub/bob/roots/demo")
    announcement = Announcement.from_bytes(message.payload)
    assert (announcement.origin, announcement.hops, announcement.url) == (
        "alice",
        ["alice", "bob"],
        mirror.url,
    )
