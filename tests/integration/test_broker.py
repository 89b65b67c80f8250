"""`caterva bro` as a real process, for each engine, checked with a plain paho client."""

from __future__ import annotations

import queue
import signal
import socket
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

ENGINES = ["amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(spawn, engine: str, port: int, statedir: Path, **kwargs):
    return spawn(
        "bro", "--engine", engine, "--port", str(port), "--statedir", str(statedir), **kwargs
    )


def client() -> paho.Client:
    return paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)


def publish_retained(port: int, topic: str, payload: bytes) -> None:
    c = client()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        info = c.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(5)
        assert info.is_published(), "the broker never acked the publish"
    finally:
        c.disconnect()
        c.loop_stop()


def first_message(port: int, topic: str, timeout: float = 5) -> paho.MQTTMessage | None:
    """Subscribe to ``topic`` and return the first message on it (others are ignored:
    amqtt may hand a new client retained messages of other topics)."""
    got: queue.Queue[paho.MQTTMessage] = queue.Queue()
    c = client()
    c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)
    c.on_message = lambda cl, ud, msg: msg.topic == topic and got.put(msg)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        return got.get(timeout=timeout)
    except queue.Empty:
        return None
    finally:
        c.disconnect()
        c.loop_stop()


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def stop_within(service, sig: int, seconds: float) -> int:
    began = time.monotonic()
    service.send_signal(sig)
    code = service.proc.wait(timeout=seconds + 10)
    elapsed = time.monotonic() - began
    assert elapsed < seconds, f"took {elapsed:.1f}s to stop"
    return code


@pytest.mark.parametrize("engine", ENGINES)
def test_a_later_client_gets_the_retained_message_and_sigterm_stops_cleanly(
    engine, spawn, tmp_path
):
    port = free_port()
    service = start_broker(spawn, engine, port, tmp_path / "state")
    assert service.url == f"mqtt://127.0.0.1:{port}"
    kids = children(service.proc.pid)
    assert len(kids) == (1 if engine == "mosquitto" else 0)

    topic = f"caterva/test/{uuid.uuid4().hex}"
    publish_retained(port, topic, b"hello")
    message = first_message(port, topic)
    assert message is not None and message.payload == b"hello" and message.retain

    assert stop_within(service, signal.SIGTERM, 4) == 0
    for kid in kids:
        assert not Path(f"/proc/{kid}").exists(), "mosquitto outlived `caterva bro`"
    assert "Traceback" not in service.log_path.read_text()


@pytest.mark.parametrize("engine", ENGINES)
def test_retained_messages_survive_a_restart(engine, spawn, tmp_path):
    port, state = free_port(), tmp_path / "state"
    first = start_broker(spawn, engine, port, state)
    topic = f"caterva/test/{uuid.uuid4().hex}"
    publish_retained(port, topic, b"kept")
    publish_retained(port, f"{topic}/cleared", b"gone soon")
    publish_retained(port, f"{topic}/cleared", b"")  # an empty retained publish clears it
    assert stop_within(first, signal.SIGINT, 4) == 0  # Ctrl-C is a clean stop too

    start_broker(spawn, engine, port, state)
    message = first_message(port, topic)
    assert message is not None and message.payload == b"kept"
    assert first_message(port, f"{topic}/cleared", timeout=0.5) is None


@pytest.mark.parametrize("engine", ENGINES)
def test_a_taken_port_is_a_one_line_error(engine, spawn, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = start_broker(spawn, engine, port, tmp_path / "state", wait=False)
        code = service.proc.wait(timeout=15)
    log = service.log_path.read_text()
    assert code != 0
    assert "Traceback" not in log
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], log
    assert service.lines == []  # never claimed to be ready


def test_missing_mosquitto_says_how_to_install_it(spawn, tmp_path):
    service = spawn(
        "bro",
        "--engine",
        "mosquitto",
        "--port",
        str(free_port()),
        "--statedir",
        str(tmp_path / "state"),
        env={"CATERVA_MOSQUITTO": str(tmp_path / "no-such-dir" / "mosquitto")},
        wait=False,
    )
    assert service.proc.wait(timeout=15) != 0
    log = " ".join(service.log_path.read_text().split())  # undo the console's line wrapping
    assert "apt-get install mosquitto" in log and "Traceback" not in log


def test_an_unknown_engine_is_refused(spawn, tmp_path):
    service = spawn("bro", "--engine", "rabbit", "--statedir", str(tmp_path), wait=False)
    assert service.proc.wait(timeout=15) == 2  # a usage error
    log = service.log_path.read_text()
    assert "unknown broker engine 'rabbit'" in log and "Traceback" not in log


@pytest.mark.parametrize("engine", ENGINES)
def test_a_second_broker_on_the_same_state_is_refused(engine, spawn, tmp_path):
    """Retained announcements are per broker: a second broker on the default state directory
    (another port, another LAN) would inherit and overwrite the first one's."""
    env = {"CATERVA_STATEDIR": str(tmp_path / "state")}
    first = spawn("bro", "--engine", engine, "--port", str(free_port()), env=env)
    state = tmp_path / "state" / "broker"
    assert f"state in {state}" in first.log_path.read_text()  # says where, at start
    second = spawn("bro", "--engine", engine, "--port", str(free_port()), env=env, wait=False)
    assert second.proc.wait(timeout=15) == 1
    log = second.log_path.read_text()
    assert (
        log == f"error: another broker is using the state directory {state}: give this "
        "one its own --statedir\n"
    ), log
    assert second.lines == []  # never claimed to be ready


def test_stopping_with_clients_connected_warns_once(spawn, tmp_path):
    """Clients' last wills are queued, not sent, when amqtt stops: it said so twice."""
    service = start_broker(spawn, "amqtt", free_port(), tmp_path / "state")
    port = int(service.url.rsplit(":", 1)[1])
    clients, connected = [], queue.Queue()
    for n in range(2):
        c = client()
        c.will_set(f"caterva/test/will/{n}", b"gone", qos=1, retain=True)
        c.on_connect = lambda *_: connected.put(True)
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append(c)
    try:
        for _ in clients:
            connected.get(timeout=5)
        assert service.stop() == 0
    finally:
        for c in clients:
            c.loop_stop()
    log = service.log_path.read_text()
    assert log.count("not broadcasted") == 1, log
