"""Shared fixtures: real services as child processes on free loopback ports.

A service is ready when it prints its ready line (caterva/child.py): tests wait for that
line, never sleep. Each child's stderr goes to a log file whose tail is shown when a
readiness wait fails.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from caterva.child import Child

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "root-example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service(Child):
    """A ``python -m caterva ...`` child that reads no user config file and runs from the repo."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(args, log, env={"CATERVA_CONFIG": "/nonexistent", **(env or {})}, cwd=ROOT)


class Services:
    """Services started into one log directory; ``close`` stops them last-first, so clients
    go before the brokers they would otherwise wait for."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[Service] = []

    def start(self, *args: str, env: dict[str, str] | None = None, wait: bool = True) -> Service:
        service = Service(list(args), self.logs / f"{len(self.started)}-{args[0]}.log", env)
        self.started.append(service)
        if wait:
            service.wait_ready()
        return service

    def close(self) -> None:
        for service in reversed(self.started):
            service.stop()


@pytest.fixture
def spawn(tmp_path):
    """spawn(*args, env=None, wait=True) -> a Service; all are stopped after the test."""
    services = Services(tmp_path)
    yield services.start
    services.close()


@pytest.fixture(params=["amqtt", pytest.param("mosquitto", marks=pytest.mark.mosquitto)])
def broker(request, spawn, tmp_path) -> str:
    """A running broker of each engine; the value is its mqtt:// URL."""
    service = spawn(
        "bro",
        "--engine",
        request.param,
        "--port",
        str(free_port()),
        "--statedir",
        str(tmp_path / f"broker-{request.param}"),
    )
    return service.url
