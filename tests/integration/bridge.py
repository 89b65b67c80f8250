"""Two Mosquitto brokers joined by a bridge, as real processes: node A, and node B whose
config bridges ``caterva/#`` both ways to A. Plain ``mosquitto`` children (not `caterva bro`,
whose wrapper would stop Mosquitto cleanly, sending its clients' last wills, when killed), so
``kill()`` is a crash: the wills held by that node die with it. Ready when B's own
notification says the bridge is up.

Minimal on purpose (the liveness tests): the CI cluster fixtures (tests/integration/cluster*)
may take its place.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from caterva.broker.mosquitto import find_binary
from tests.conftest import free_port
from tests.integration.fakes import mqtt

BRIDGE_STATE = "$SYS/broker/connection/+/state"  # Mosquitto says "1" here once a bridge is up


class Node:
    """One ``mosquitto -c`` child on a free loopback port, its log in ``statedir``."""

    def __init__(self, statedir: Path, *extra: str) -> None:
        port = free_port()
        statedir.mkdir(parents=True)
        conf = statedir / "mosquitto.conf"
        lines = [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "log_dest stderr",
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",  # as root it would become "mosquitto"
            *extra,
        ]
        conf.write_text("\n".join([*lines, ""]))
        self.conf, self.log = conf, statedir / "mosquitto.log"
        self.port, self.url = port, f"mqtt://127.0.0.1:{port}"
        self.start()

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([find_binary(), "-c", str(self.conf)], stderr=log)

    def wait(self, subscribe: str | None = None, timeout: float = 30) -> None:
        """Until it takes connections (and, given ``subscribe``, a "1" arrives there)."""
        up = threading.Event()
        for _ in range(int(timeout * 10)):
            assert self.proc.poll() is None, f"mosquitto at {self.url} exited"
            try:
                with mqtt(self.url) as client:
                    if subscribe is None:
                        return
                    client.on_message = lambda c, u, m: m.payload == b"1" and up.set()
                    client.subscribe(subscribe)
                    assert up.wait(timeout), f"nothing said {subscribe} at {self.url}"
                    return
            except ConnectionRefusedError:
                threading.Event().wait(0.1)  # it listens a moment after it starts
        raise AssertionError(f"mosquitto at {self.url} never listened")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@contextmanager
def bridged(statedir: Path) -> Iterator[tuple[Node, Node]]:
    """Nodes A and B, B bridged to A, for the ``with`` block."""
    with ExitStack() as stack:
        # A saves its retained messages every second: they outlive a crash, as in the field
        a = Node(
            statedir / "node-a",
            "persistence true",
            f"persistence_location {statedir / 'node-a'}/",
            "autosave_interval 1",
        )
        stack.callback(a.stop)
        a.wait()
        bridge = ["connection node-a", f"address 127.0.0.1:{a.port}", "topic caterva/# both 1"]
        b = Node(statedir / "node-b", *bridge, "restart_timeout 1")
        stack.callback(b.stop)
        b.wait(subscribe=BRIDGE_STATE)
        yield a, b
