"""Shared fixtures: real services as child processes on free loopback ports.

A service is ready when it prints ``caterva <service> ready <url>`` (see services/serve.py):
tests wait for that line, never sleep. Each child's stderr goes to a log file whose tail is
shown when a readiness wait fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "root-example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A ``python -m caterva ...`` child process."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "caterva", *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, "CATERVA_CONFIG": "/nonexistent", **(env or {})},
            cwd=ROOT,
        )
        self.url: str | None = None
        self.lines: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            parts = line.split()
            if len(parts) == 4 and parts[0] == "caterva" and parts[2] == "ready" and not self.url:
                self.url = parts[3]
                self._ready.set()
        self._ready.set()  # the process ended: unblock the waiter

    def wait_ready(self, timeout: float = 30) -> str:
        self._ready.wait(timeout)
        if not self.url:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise AssertionError(f"caterva {' '.join(self.args)} never got ready:\n{tail}")
        return self.url

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        self.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)


@pytest.fixture
def spawn(tmp_path):
    """spawn(*args, env=None) -> a ready Service; all are stopped after the test."""
    started: list[Service] = []

    def _spawn(*args: str, env: dict[str, str] | None = None, wait: bool = True) -> Service:
        service = Service(list(args), tmp_path / f"service-{len(started)}.log", env)
        started.append(service)
        if wait:
            service.wait_ready()
        return service

    yield _spawn
    for service in reversed(started):  # clients before the brokers they would wait for
        service.stop()


@pytest.fixture(params=["amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto)])
def broker(request, spawn, tmp_path) -> str:
    """A running broker of each engine; the value is its mqtt:// URL."""
    service = spawn(
        "bro", "--engine", request.param, "--port", str(free_port()),
        "--statedir", str(tmp_path / f"broker-{request.param}"),
    )
    return service.url
