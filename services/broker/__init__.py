"""``caterva bro``: an MQTT broker for the control plane.

Two engines, one contract: listen on HOST:PORT, allow anonymous MQTT 3.1.1 clients, keep
retained messages across restarts (state in the statedir), print
``caterva broker ready mqtt://HOST:PORT`` once clients can connect, and stop cleanly (exit 0)
on SIGINT/SIGTERM.

- ``amqtt`` (default): embedded, pure Python, in this process (``embedded.py``).
- ``mosquitto``: a Mosquitto child process run from a config we write (``mosquitto.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from caterva.config import setting, statedir as state_directory
from caterva.errors import BadRequest

ENGINES = ("amqtt", "mosquitto")


def run(
    engine: str = "amqtt",
    host: str | None = None,
    port: int | None = None,
    statedir: str | os.PathLike | None = None,
) -> None:
    """Run the broker until SIGINT/SIGTERM. Errors are raised as caterva errors."""
    if engine not in ENGINES:
        raise BadRequest(f"unknown broker engine {engine!r}: use {' or '.join(ENGINES)}")
    host = setting("broker_host", host)
    port = setting("broker_port", port)
    state: Path = state_directory(statedir, "broker")
    if engine == "amqtt":
        from services.broker import embedded

        embedded.serve(host, port, state)
    else:
        from services.broker import mosquitto

        mosquitto.serve(host, port, state)


def broker_url(host: str, port: int) -> str:
    return f"mqtt://[{host}]:{port}" if ":" in host else f"mqtt://{host}:{port}"
