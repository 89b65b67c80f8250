"""``caterva bro``: an MQTT broker for the control plane.

Two engines, one contract: listen on HOST:PORT, allow anonymous MQTT 3.1.1 clients, keep
retained messages across restarts (state in the statedir), print
``caterva broker ready mqtt://HOST:PORT`` once clients can connect, and stop cleanly (exit 0)
on SIGINT/SIGTERM. With ``--password-file``, only its accounts connect and each may publish
only in its own subtree (``access.py``); with ``--tls-cert/--tls-key``, clients speak MQTTS.

- ``amqtt`` (default): embedded, pure Python, in this process (``embedded.py``).
- ``mosquitto``: a Mosquitto child process run from a config we write (``mosquitto.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from caterva.config import lock_statedir, setting
from caterva.config import statedir as state_directory
from caterva.errors import BadRequest

ENGINES = ("amqtt", "mosquitto")


def run(
    engine: str = "amqtt",
    host: str | None = None,
    port: int | None = None,
    statedir: str | os.PathLike | None = None,
    password_file: str | os.PathLike | None = None,
    tls_cert: str | os.PathLike | None = None,
    tls_key: str | os.PathLike | None = None,
    metrics: str | None = None,
) -> None:
    """Run the broker until SIGINT/SIGTERM. Errors are raised as caterva errors. ``metrics``:
    HOST:PORT to serve /metrics on (the embedded engine only)."""
    if engine not in ENGINES:
        raise BadRequest(f"unknown broker engine {engine!r}: use {' or '.join(ENGINES)}")
    if engine == "mosquitto" and setting("metrics", metrics):
        raise BadRequest(
            "--metrics is for the embedded broker: Mosquitto publishes its figures on $SYS "
            "topics, for an MQTT exporter to serve (README: Operations)"
        )
    host = setting("broker_host", host)
    port = setting("broker_port", port)
    from caterva.service.security import tls_files

    tls = tls_files(tls_cert, tls_key)  # both or neither, and a pair that loads
    accounts = None
    passwords = setting("broker_password_file", os.fspath(password_file) if password_file else None)
    if passwords:
        from caterva.broker import access

        accounts = access.read_accounts(passwords)
    state: Path = state_directory(statedir, "broker")
    # retained messages are per broker: a second one on the same state would mix two setups
    lock = lock_statedir(state, "broker")  # held while we serve
    try:
        if engine == "amqtt":
            from caterva.broker import embedded

            scraped = None
            if setting("metrics", metrics):  # the web parts are imported only then
                from caterva.service.metrics import bind

                scraped = bind(metrics)
            embedded.serve(host, port, state, accounts, tls, scraped)
        else:
            from caterva.broker import mosquitto

            mosquitto.serve(host, port, state, accounts, tls)
    finally:
        os.close(lock)


def broker_url(host: str, port: int, tls: bool = False) -> str:
    scheme = "mqtts" if tls else "mqtt"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
