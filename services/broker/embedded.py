"""The embedded engine: an amqtt broker on this process's event loop.

We bind the listening socket ourselves and hand each connection to amqtt as an "external"
listener: a taken port is then a clear error before amqtt starts (amqtt would log a traceback),
and ``--port 0`` works with the real port in the ready line. amqtt keeps retained messages in
memory only; ``RetainedStore`` below keeps them in SQLite in the statedir. (amqtt's own
``SessionDBPlugin`` needs SQLAlchemy and aiosqlite, and by default wipes its database on a
clean shutdown, which is exactly when we want it kept.)
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker, BrokerContext, RetainedApplicationMessage
from amqtt.errors import BrokerError, PluginError, PluginLoadError
from amqtt.plugins.base import BasePlugin

from caterva.errors import StateError
from services.broker import broker_url
from services.serve import bind, ready

log = logging.getLogger("caterva.broker")

LISTENER = "default"
SHUTDOWN_GRACE = 3.0  # seconds


class RetainedStore(BasePlugin[BrokerContext]):
    """Persist each topic's retained message, and restore them all when the broker starts."""

    @dataclass
    class Config:
        path: str

    def __init__(self, context: BrokerContext) -> None:
        super().__init__(context)
        # autocommit: each retained message is durable once the broker has taken it
        self._db = sqlite3.connect(self.config.path, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS retained"
            " (topic TEXT PRIMARY KEY, payload BLOB NOT NULL, qos INTEGER NOT NULL)"
        )

    async def on_broker_post_start(self) -> None:
        rows = self._db.execute("SELECT topic, payload, qos FROM retained").fetchall()
        for topic, payload, qos in rows:
            self.context.retained_messages[topic] = RetainedApplicationMessage(
                None, topic, payload, qos
            )
        if rows:
            log.info("restored %d retained messages", len(rows))

    async def on_broker_retained_message(self, *, client_id, retained_message) -> None:
        if client_id is not None:  # a copy queued for one offline session, not the topic's value
            return
        if retained_message.data:
            self._db.execute(
                "INSERT OR REPLACE INTO retained VALUES (?, ?, ?)",
                (retained_message.topic, bytes(retained_message.data), retained_message.qos or 0),
            )
        else:  # an empty retained publish clears the topic
            self._db.execute("DELETE FROM retained WHERE topic = ?", (retained_message.topic,))

    async def close(self) -> None:
        self._db.close()


def broker_config(statedir: Path) -> dict:
    return {
        "listeners": {LISTENER: {"type": "external"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            f"{__name__}.RetainedStore": {"path": str(statedir / "retained.sqlite3")},
        },
    }


def serve(host: str, port: int, statedir: Path) -> None:
    sock = bind(host, port)  # raises Unavailable naming host:port
    asyncio.run(_serve(sock, statedir))


async def _serve(sock, statedir: Path) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    try:
        broker = Broker(broker_config(statedir))
        await broker.start()
    except (BrokerError, PluginError, PluginLoadError) as exc:
        reason = exc.__cause__ or exc  # amqtt wraps the real error (e.g. an unopenable database)
        raise StateError(f"the embedded MQTT broker did not start: {reason}") from exc

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await broker.external_connected(
            StreamReaderAdapter(reader), StreamWriterAdapter(writer), LISTENER
        )

    server = await asyncio.start_server(connected, sock=sock)
    host, port = sock.getsockname()[:2]
    url = broker_url(host, port)
    log.info("MQTT broker (amqtt, embedded) listening on %s; state in %s", url, statedir)
    ready("broker", url)
    try:
        await stop.wait()
    finally:
        log.info("stopping the MQTT broker")
        server.close()  # no new connections while amqtt closes the current ones
        try:
            # amqtt's shutdown now and then waits forever on a client's handler: bound it
            await asyncio.wait_for(broker.shutdown(), SHUTDOWN_GRACE)
        except TimeoutError:
            log.warning("the MQTT broker did not stop within %s s; exiting anyway", SHUTDOWN_GRACE)
