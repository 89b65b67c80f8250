"""caterva.mqtt.Bus against real brokers of each engine."""

from __future__ import annotations

import asyncio
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from caterva.errors import BrokerUnavailable
from caterva.mqtt import Bus

pytestmark = pytest.mark.anyio

ENGINES = ["amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto)]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(name: str) -> str:
    return f"caterva/test/{name}/{uuid.uuid4().hex}"


class Watcher:
    """A plain paho client subscribed to one topic; ``get`` returns the next payload on it."""

    def __init__(self, url: str, topic: str) -> None:
        host, port = url.removeprefix("mqtt://").rsplit(":", 1)
        self.topic = topic
        self.payloads: queue.Queue[bytes] = queue.Queue()
        subscribed: queue.Queue[bool] = queue.Queue()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.put(True)
        self.client.on_message = lambda c, u, m: m.topic == topic and self.payloads.put(m.payload)
        self.client.connect(host, int(port))
        self.client.loop_start()
        subscribed.get(timeout=5)  # SUBACK: from here on nothing published is missed

    async def get(self, timeout: float = 5) -> bytes:
        return await asyncio.to_thread(self.payloads.get, timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_round_trip(broker):
    topic = unique("round-trip")
    received: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    bus = Bus(broker, f"test-{uuid.uuid4().hex[:8]}")
    bus.subscribe(f"{topic}/#", lambda t, p: received.put_nowait((t, p)))
    await bus.start(timeout=5)
    try:
        # retained first: it arrives whether or not the SUBSCRIBE is through yet ...
        assert await bus.publish(f"{topic}/a", b"one", retain=True)
        assert await asyncio.wait_for(received.get(), 5) == (f"{topic}/a", b"one")
        # ... so once it has, a plain message must come too
        assert await bus.publish(f"{topic}/b", b"two")
        assert await asyncio.wait_for(received.get(), 5) == (f"{topic}/b", b"two")
    finally:
        await bus.stop()


async def test_publish_waits_for_the_ack(broker):
    topic = unique("ack")
    watcher = Watcher(broker, topic)
    bus = Bus(broker, f"test-{uuid.uuid4().hex[:8]}")
    await bus.start(timeout=5)
    try:
        assert await bus.publish(topic, b"acked", qos=1) is True
        assert await watcher.get() == b"acked"
    finally:
        await bus.stop()
        watcher.close()


async def test_publish_without_an_ack_returns_false():
    """A broker that accepts the connection but never acks: publish must wait, then say no."""
    CONNACK_ACCEPTED = bytes([0x20, 0x02, 0x00, 0x00])

    async def mute_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # the CONNECT
        writer.write(CONNACK_ACCEPTED)
        while await reader.read(1024):  # swallow PUBLISH (and PINGREQ), answer nothing
            pass
        writer.close()

    server = await asyncio.start_server(mute_broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bus = Bus(f"mqtt://127.0.0.1:{port}", "test-mute")
    await bus.start(timeout=5)
    try:
        assert await bus.publish(unique("unacked"), b"x", qos=1, timeout=0.3) is False
    finally:
        await bus.stop()
        server.close()


async def test_broker_unavailable_when_nothing_listens():
    url = f"mqtt://127.0.0.1:{free_port()}"
    bus = Bus(url, "test-nobody-home")
    try:
        with pytest.raises(BrokerUnavailable, match=url):
            await bus.start(timeout=1)
        # no ack can come: publish says so instead of raising
        assert await bus.publish(unique("void"), b"x", timeout=0.2) is False
    finally:
        await bus.stop()


WILL_CHILD = textwrap.dedent("""
    import asyncio, sys
    from caterva.mqtt import Bus

    async def main():
        bus = Bus(sys.argv[1], "test-will-child", will=(sys.argv[2], b"gone"))
        await bus.start(timeout=10)
        print("connected", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
""")


async def test_last_will_is_delivered_when_the_process_is_killed(broker):
    topic = unique("will")
    watcher = Watcher(broker, topic)
    child = subprocess.Popen(
        [sys.executable, "-c", WILL_CHILD, broker, topic], stdout=subprocess.PIPE, text=True
    )
    try:
        line = await asyncio.to_thread(child.stdout.readline)
        assert line.strip() == "connected"
        assert watcher.payloads.empty()  # no will while it lives
        child.send_signal(signal.SIGKILL)
        assert await watcher.get() == b"gone"
    finally:
        child.kill()
        child.wait()
        watcher.close()


@pytest.mark.parametrize("engine", ENGINES)
async def test_reconnects_after_a_broker_restart_and_reruns_hooks(engine, spawn, tmp_path):
    port, state = free_port(), tmp_path / "state"
    args = ("bro", "--engine", engine, "--port", str(port), "--statedir", str(state))
    service = spawn(*args)
    topic = unique("restart")
    received: asyncio.Queue[bytes] = asyncio.Queue()
    connects: asyncio.Queue[None] = asyncio.Queue()

    async def hook() -> None:
        connects.put_nowait(None)

    bus = Bus(service.url, f"test-{uuid.uuid4().hex[:8]}")
    bus.subscribe(topic, lambda t, p: received.put_nowait(p))
    bus.on_connect(hook)
    await bus.start(timeout=5)
    try:
        await asyncio.wait_for(connects.get(), 5)
        assert await asyncio.to_thread(service.stop) == 0

        spawn(*args)
        await asyncio.wait_for(connects.get(), 15)  # paho retries every 1-5 s
        assert bus.connected.is_set()
        # the subscription came back with the connection
        assert await bus.publish(topic, b"after", retain=True)
        assert await asyncio.wait_for(received.get(), 5) == b"after"
    finally:
        await bus.stop()


async def test_a_stale_offline_status_is_replaced_each_time_and_said_once(broker, caplog):
    from caterva.protocol import topics
    from caterva.protocol.messages import Status
    from caterva.service.presence import Presence

    caplog.set_level("INFO", logger="caterva.presence")
    pub_id = f"test-{uuid.uuid4().hex[:8]}"
    stale = Status("offline", "an-earlier-run", "http://x").to_bytes()
    watcher = Watcher(broker, topics.status(pub_id))
    host, port = broker.removeprefix("mqtt://").rsplit(":", 1)

    async def stale_status() -> None:  # as a previous run's last will would be
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        client.connect(host, int(port))
        client.loop_start()
        await asyncio.to_thread(
            client.publish(topics.status(pub_id), stale, 1, True).wait_for_publish, 5
        )
        client.disconnect()
        client.loop_stop()

    async def nothing() -> None:
        pass

    async def until(state: str) -> None:
        while Status.from_bytes(await watcher.get()).state != state:
            pass

    await stale_status()
    presence = Presence(
        broker, pub_id=pub_id, session="this-run", url="http://y", role="test", announce=nothing
    )
    await presence.start()
    try:
        await until("online")
        for _ in range(2):
            await stale_status()
            await until("offline")
            await until("online")  # replaced again, every time
    finally:
        await presence.stop()
        watcher.close()
    said = [r for r in caplog.records if "replacing a stale offline status" in r.getMessage()]
    assert len(said) == 1, caplog.text
