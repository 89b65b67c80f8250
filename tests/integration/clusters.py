"""Clustered brokers as real processes on free loopback ports (for test_cluster.py):

- ``mosquitto-bridge``: Mosquitto nodes A and B (caterva's own Mosquitto config, see
  caterva/broker/mosquitto.py), B bridging ``caterva/v1/#`` both ways to A. Plain
  ``mosquitto`` children, not ``caterva bro`` (which stops its Mosquitto cleanly, sending the
  last wills it holds, when killed): ``kill_a()`` is a crash. Ready when B's own bridge
  notification says the bridge is up.
- ``aedes-redis``: one ``redis-server`` and two Aedes nodes sharing it (tests/cluster/
  aedes-node.mjs, its npm packages pinned in tests/cluster/package-lock.json). Ready when each
  node says so (it has seen its own message come back through Redis).

What a kind needs and is missing makes its tests skip, saying what to install
(scripts/test installs all of it where it can).
"""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from caterva.broker.mosquitto import _die_with_parent, config_text, find_binary
from caterva.errors import CatervaError
from caterva.protocol import topics
from caterva.protocol.messages import Status
from tests.conftest import ROOT, free_port
from tests.integration.fakes import mqtt

KINDS = ("mosquitto-bridge", "aedes-redis")
NODE_DIR = ROOT / "tests" / "cluster"
BRIDGE_STATE = "$SYS/broker/connection/+/state"  # Mosquitto retains "1"/"0" here for a bridge


class Process:
    """A program whose output (stdout and stderr) goes to ``log``; ready once a line holding
    ``marker`` is printed."""

    def __init__(self, argv: list[str], log: Path, marker: str) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(),  # no node left behind if the test run is killed
        )
        self._ready = threading.Event()
        threading.Thread(target=self._read, args=(marker,), daemon=True).start()

    def _read(self, marker: str) -> None:
        with open(self.log, "ab") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                if marker.encode() in line:
                    self._ready.set()
        self._ready.set()  # it exited: unblock the waiter

    def wait_ready(self, timeout: float = 30) -> None:
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            tail = self.log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{self.proc.args[0]} never got ready:\n{tail}")

    def kill(self) -> None:
        """A crash: no goodbye to anyone."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Cluster:
    """Two broker nodes: ``a`` and ``b`` are their mqtt:// URLs."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind, self.dir = kind, directory
        self.processes: list[Process] = []
        self.a = self.b = ""
        self.node_a: Process | None = None

    def start(self, argv: list[str], name: str, marker: str) -> Process:
        process = Process(argv, self.dir / f"{name}.log", marker)
        self.processes.append(process)
        process.wait_ready()
        return process

    def kill_a(self) -> None:
        """Crash node A."""
        self.node_a.kill()

    def restart_a(self) -> None:
        """Node A again, with what it had saved (Mosquitto: until B's bridge is up again)."""
        assert self.kind == "mosquitto-bridge", "Aedes nodes keep their state in Redis"
        self.node_a = self.start(self.node_a.proc.args, "node-a", " running")
        wait_bridge(self.b, up=True)

    def wait_a_lost(self, pub_id: str) -> None:
        """Until B shows it knows A is gone: its bridge is down (Mosquitto); it has published
        the last will of ``pub_id``, a client of A (Aedes, 3 to 7 heartbeats after A fell
        silent)."""
        if self.kind == "mosquitto-bridge":
            wait_bridge(self.b, up=False)
        else:
            retained_status(self.b, pub_id, "offline")

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def missing(kind: str) -> list[str]:
    """What ``kind`` needs and this machine lacks, with how to get it."""
    if kind == "mosquitto-bridge":
        try:
            find_binary()
        except CatervaError:
            return ["mosquitto (apt-get install mosquitto)"]
        return []
    out = []
    if not shutil.which("redis-server"):
        out.append("redis-server (apt-get install redis-server)")
    if not shutil.which("node"):
        out.append("node (apt-get install nodejs npm)")
    if not (NODE_DIR / "node_modules" / ".package-lock.json").is_file():  # npm writes it last
        out.append("the Aedes packages (npm ci in tests/cluster)")
    return out


def start_cluster(kind: str, directory: Path, heartbeat_ms: int = 60_000) -> Cluster:
    """Nodes A and B of ``kind``, ready; ``heartbeat_ms`` (Aedes) is how often a node tells the
    others it lives: they publish a silent node's last wills 3 to 7 heartbeats later."""
    lacking = missing(kind)
    if lacking:
        pytest.skip(f"{kind} cluster tests need {', '.join(lacking)}")
    directory.mkdir(parents=True)
    cluster = Cluster(kind, directory)
    try:
        if kind == "mosquitto-bridge":
            _mosquitto_bridge(cluster)
        else:
            _aedes_redis(cluster, heartbeat_ms)
    except BaseException:
        cluster.close()
        raise
    return cluster


def _mosquitto_bridge(cluster: Cluster) -> None:
    ports = free_port(), free_port()
    for name, port in zip("ab", ports, strict=True):
        statedir = cluster.dir / f"node-{name}"
        statedir.mkdir()
        lines = [config_text("127.0.0.1", port, statedir)]
        if name == "a":  # its retained messages outlive a crash (saved every second)
            lines += ["autosave_interval 1", ""]
        else:  # the bridge: everything caterva says, both ways; redialled every second
            lines += [
                "connection caterva-b-to-a",
                f"address 127.0.0.1:{ports[0]}",
                f"topic {topics.PREFIX}/# both 1",
                "restart_timeout 1",
                "",
            ]
        conf = statedir / "mosquitto.conf"
        conf.write_text("\n".join(lines))
        node = cluster.start([find_binary(), "-c", str(conf)], f"node-{name}", " running")
        setattr(cluster, name, f"mqtt://127.0.0.1:{port}")
        if name == "a":
            cluster.node_a = node
    wait_bridge(cluster.b, up=True)


def wait_bridge(broker: str, up: bool, timeout: float = 30) -> None:
    """Until Mosquitto at ``broker`` says its bridge is up (or down)."""
    said = threading.Event()
    want = b"1" if up else b"0"
    with mqtt(broker) as client:
        client.on_message = lambda c, u, m: m.payload == want and said.set()
        client.subscribe(BRIDGE_STATE, qos=1)
        assert said.wait(timeout), f"the bridge of {broker} never said {want!r}"


def _aedes_redis(cluster: Cluster, heartbeat_ms: int) -> None:
    redis = free_port()
    cluster.start(
        [
            *("redis-server", "--port", str(redis), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(cluster.dir)),
        ],
        "redis",
        "Ready to accept connections",
    )
    for name in "ab":
        port = free_port()
        script = str(NODE_DIR / "aedes-node.mjs")
        argv = ["node", script, str(port), str(redis), f"node-{name}", str(heartbeat_ms)]
        node = cluster.start(argv, f"node-{name}", "caterva-test aedes ready")
        setattr(cluster, name, f"mqtt://127.0.0.1:{port}")
        if name == "a":
            cluster.node_a = node


def retained_status(broker: str, pub_id: str, state: str, timeout: float = 30) -> None:
    """Until a new subscription at ``broker`` is sent ``pub_id``'s retained status in
    ``state``: asked afresh each time, as a subscriber connected all along may be sent nothing
    (see test_cluster.py)."""
    deadline = time.monotonic() + timeout
    heard: queue.Queue[bytes] = queue.Queue()
    while True:
        with mqtt(broker) as client:
            client.on_message = lambda c, u, m: heard.put(m.payload)
            client.subscribe(topics.status(pub_id), qos=1)
            try:
                if Status.from_bytes(heard.get(timeout=1)).state == state:
                    return
                time.sleep(0.1)  # retained, in the other state: ask again soon
            except queue.Empty:
                pass
        assert time.monotonic() < deadline, f"{broker} never retained {pub_id} {state}"
