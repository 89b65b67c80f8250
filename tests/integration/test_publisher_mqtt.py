"""The publisher's MQTT side against real brokers (both engines): birth, will, retained
announcement, discover, change events, changes made while it was down, and big plain files."""

from __future__ import annotations

import hashlib
import os
import queue
import signal
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
from caterva.protocol.messages import Announcement, Change, Status
from caterva.protocol.metadata import DatasetInfo
from tests.conftest import free_port

ROOT = "demo"


class Listener:
    """A plain paho client that queues what arrives on ``patterns``."""

    def __init__(self, broker: str, *patterns: str) -> None:
        url = BrokerURL.parse(broker)
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.backlog: list[paho.MQTTMessage] = []
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        self.client.on_connect = lambda c, *_: c.subscribe([(p, 1) for p in patterns])
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = lambda c, u, message: self.messages.put(message)
        self.client.connect(url.host, url.port)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK from the broker"

    def next(self, topic: str, timeout: float = 10, where=lambda m: True) -> paho.MQTTMessage:
        """The next message on ``topic`` that satisfies ``where``; others stay for later."""
        for message in self.backlog:
            if message.topic == topic and where(message):
                self.backlog.remove(message)
                return message
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if message.topic == topic and where(message):
                return message
            self.backlog.append(message)
        raise AssertionError(f"nothing on {topic} within {timeout} s")

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        if self.client.is_connected():  # a client left reconnecting makes loop_stop wait
            self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def listeners():
    made: list[Listener] = []

    def listen(broker: str, *patterns: str) -> Listener:
        made.append(Listener(broker, *patterns))
        return made[-1]

    yield listen
    for listener in made:
        listener.close()


def make_array(path, rows=40):
    data = np.arange(rows * 40, dtype="f8").reshape(rows, 40)
    blosc2.asarray(data, chunks=(10, 40), blocks=(5, 20), urlpath=str(path), mode="w")


def start(spawn, broker, root, state, *extra):
    return spawn(
        "pub",
        ROOT,
        str(root),
        "--http",
        "127.0.0.1:0",
        "--broker",
        broker,
        "--statedir",
        str(state),
        *extra,
    )


def rest_get(url, path):
    return httpx.get(url + path, timeout=10).json()


def offline(session):
    """Matches the offline status of one session (birth and will carry the same session)."""

    def match(message):
        status = Status.from_bytes(message.payload)
        return (status.state, status.session) == ("offline", session)

    return match


def test_retained_announcement_discover_and_will(spawn, broker, listeners, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    make_array(root / "a.b2nd")
    make_array(root / "b.b2nd")
    pub = start(spawn, broker, root, tmp_path / "state")
    pub_id = rest_get(pub.url, "/v1/health")["pub_id"]
    status_topic, root_topic = topics.status(pub_id), topics.root(pub_id, ROOT)
    listeners(broker, root_topic).next(root_topic)  # it has announced by now

    late = listeners(broker, topics.ALL_STATUS, topics.ALL_ROOTS)  # subscribes afterwards
    announced = late.next(root_topic)
    assert announced.retain
    ann = Announcement.from_bytes(announced.payload)
    manifest = rest_get(pub.url, rest.manifest(ROOT))
    assert (ann.root, ann.url, ann.manifest_etag, ann.datasets) == (
        ROOT,
        pub.url,
        manifest["etag"],
        2,
    )
    assert ann.origin == pub_id and ann.hops == [pub_id]
    online = late.next(status_topic)
    status = Status.from_bytes(online.payload)
    assert online.retain and (status.state, status.session, status.url) == (
        "online",
        ann.session,
        pub.url,
    )

    late.publish(topics.DISCOVER, b'{"proto":1,"sender":"test"}')
    again = late.next(root_topic, where=lambda m: not m.retain)
    assert Announcement.from_bytes(again.payload) == ann

    # a late will of an earlier run lands on the retained status: the publisher restores it
    late.publish(status_topic, Status("offline", "earlier-run").to_bytes(), retain=True)
    restored = late.next(status_topic, where=lambda m: b'"online"' in m.payload)
    assert Status.from_bytes(restored.payload).session == ann.session

    pub.kill()  # no goodbye: the broker sends the will
    will = Status.from_bytes(late.next(status_topic, where=offline(ann.session)).payload)
    assert will.url == pub.url


@pytest.mark.parametrize("how", [[], ["--poll"]], ids=["watching", "polling"])
def test_change_events_list_exactly_the_changed_chunks(spawn, broker, listeners, tmp_path, how):
    root = tmp_path / "root"
    root.mkdir()
    make_array(root / "a.b2nd")
    make_array(root / "gone.b2nd")
    pub = start(spawn, broker, root, tmp_path / "state", *how)
    pub_id = rest_get(pub.url, "/v1/health")["pub_id"]
    changes, root_topic = topics.changes(pub_id, ROOT), topics.root(pub_id, ROOT)
    events = listeners(broker, changes, root_topic, topics.status(pub_id))
    first = Announcement.from_bytes(events.next(root_topic).payload)

    written = time.monotonic()
    arr = blosc2.open(str(root / "a.b2nd"), mode="a")
    arr[12:14] = -1.0  # rows 12-13 live in chunk 1
    arr[35] = -2.0  # row 35 in chunk 3
    del arr
    seen: set[int] = set()
    first_event = None
    # the two writes may reach the publisher as one event or two (it may describe the file
    # between them): never a chunk that did not change
    while seen != {1, 3}:
        change = Change.from_bytes(events.next(changes, timeout=5).payload)
        first_event = first_event or time.monotonic() - written
        assert (change.path, change.op, change.session) == ("a.b2nd", "update", first.session)
        seen.update(change.chunks)
        assert seen <= {1, 3}, seen
    assert first_event < 1.0
    assert change.etag == rest_get(pub.url, rest.info(ROOT, "a.b2nd"))["etag"]
    reannounced = Announcement.from_bytes(
        events.next(
            root_topic,
            where=lambda m: (
                not m.retain
                and Announcement.from_bytes(m.payload).manifest_etag == change.manifest_etag
            ),
        ).payload
    )
    assert reannounced.manifest_etag == rest_get(pub.url, rest.manifest(ROOT))["etag"]
    seq = change.seq

    (root / "gone.b2nd").unlink()
    deleted = Change.from_bytes(events.next(changes, timeout=5).payload)
    assert (deleted.op, deleted.path, deleted.etag, deleted.seq) == (
        "delete",
        "gone.b2nd",
        None,
        seq + 1,
    )

    make_array(root / ".new.b2nd.tmp")  # written aside, then renamed: one clean create
    os.replace(root / ".new.b2nd.tmp", root / "new.b2nd")
    created = Change.from_bytes(events.next(changes, timeout=5).payload)
    assert (created.op, created.path, created.seq) == ("create", "new.b2nd", seq + 2)
    assert created.etag == rest_get(pub.url, rest.info(ROOT, "new.b2nd"))["etag"]

    assert pub.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    events.next(topics.status(pub_id), where=offline(first.session))


def test_changes_made_while_down_are_announced_at_start(spawn, broker, listeners, tmp_path):
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    make_array(root / "a.b2nd")
    make_array(root / "b.b2nd")
    pub = start(spawn, broker, root, state)
    pub_id = rest_get(pub.url, "/v1/health")["pub_id"]
    changes, root_topic = topics.changes(pub_id, ROOT), topics.root(pub_id, ROOT)
    before = Announcement.from_bytes(listeners(broker, root_topic).next(root_topic).payload)
    assert pub.stop() in (0, -signal.SIGTERM)

    arr = blosc2.open(str(root / "a.b2nd"), mode="a")
    arr[0] = 5.0  # chunk 0 only
    del arr
    (root / "b.b2nd").unlink()
    make_array(root / "c.b2nd")
    events = listeners(broker, changes)
    again = start(spawn, broker, root, state)
    assert rest_get(again.url, "/v1/health")["pub_id"] == pub_id  # same identity
    got = [Change.from_bytes(events.next(changes).payload) for _ in range(3)]
    assert [(c.seq, c.op, c.path, c.chunks) for c in got] == [
        (1, "update", "a.b2nd", [0]),
        (2, "delete", "b.b2nd", None),
        (3, "create", "c.b2nd", None),
    ]
    assert got[0].session != before.session
    assert got[-1].manifest_etag == rest_get(again.url, rest.manifest(ROOT))["etag"]


def test_broker_down_at_start_then_up_and_restarted(spawn, listeners, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    make_array(root / "a.b2nd")
    port = free_port()
    broker = f"mqtt://127.0.0.1:{port}"
    pub = start(spawn, broker, root, tmp_path / "state")  # no broker yet: REST serves anyway
    health = rest_get(pub.url, "/v1/health")
    assert health["broker_connected"] is False and health["datasets"] == 1
    root_topic = topics.root(health["pub_id"], ROOT)

    for attempt in range(2):  # a fresh amqtt keeps no retained messages: only a re-announcement
        bro = spawn(
            "bro",
            "--engine",
            "amqtt",
            "--port",
            str(port),
            "--statedir",
            str(tmp_path / f"broker-{attempt}"),
        )
        listener = listeners(broker, root_topic)
        ann = Announcement.from_bytes(listener.next(root_topic).payload)
        assert ann.session == health["session"]
        listener.close()
        bro.kill()


def vm_hwm(pid: int) -> int:
    """Peak resident set size of a process, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def test_big_plain_file_is_chunked_with_bounded_memory(spawn, broker, listeners, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    pub = start(spawn, broker, root, tmp_path / "state")
    pub_id = rest_get(pub.url, "/v1/health")["pub_id"]
    changes = topics.changes(pub_id, ROOT)
    events = listeners(broker, changes)
    baseline = vm_hwm(pub.proc.pid)

    size = 72 << 20  # written aside and renamed in, so the publisher sees it complete
    rng = np.random.default_rng(7)
    pattern = bytes(range(256)) * 256
    digest = hashlib.blake2b()
    with open(tmp_path / "big.bin", "wb") as out:
        for k in range(size // len(pattern)):
            block = rng.bytes(len(pattern)) if k % 16 == 0 else pattern
            out.write(block)
            digest.update(block)
    os.replace(tmp_path / "big.bin", root / "big.bin")

    created = Change.from_bytes(events.next(changes, timeout=30).payload)
    assert (created.op, created.path) == ("create", "big.bin")
    grew = vm_hwm(pub.proc.pid) - baseline
    assert grew < size // 4, f"RSS peak grew by {grew >> 20} MiB preparing a {size >> 20} MiB file"

    info = rest_get(pub.url, rest.info(ROOT, "big.bin"))
    assert (info["kind"], info["size"], info["nchunks"]) == ("file", size, 72)
    assert info["cbytes"] < size // 4  # the pattern compresses
    reader = rest.BatchReader(rest.expected_frames([(DatasetInfo.from_dict(info), range(72))]))
    again = hashlib.blake2b()
    with httpx.stream(
        "GET", pub.url + rest.chunks(ROOT, "big.bin"), params={"i": "0-71"}, timeout=30
    ) as response:
        for part in response.iter_bytes():
            for i, chunk_digest_hex, raw in reader.feed(part):
                assert chunk_digest_hex == info["digests"][i]
                again.update(blosc2.decompress(raw))
    reader.close()
    assert again.hexdigest() == digest.hexdigest()
