"""The embedded engine: an amqtt broker on this process's event loop.

We bind the listening socket ourselves and hand each connection to amqtt as an "external"
listener: a taken port is then a clear error before amqtt starts (amqtt would log a traceback),
and ``--port 0`` works with the real port in the ready line. amqtt keeps retained messages in
memory only; ``RetainedStore`` below keeps them in SQLite in the statedir. (amqtt's own
``SessionDBPlugin`` needs SQLAlchemy and aiosqlite, and by default wipes its database on a
clean shutdown, which is exactly when we want it kept.)

With ``--password-file``, ``PasswordAuth`` replaces anonymous access and ``TopicAccess`` applies
the rules of access.py (a publisher writes only its own subtree). amqtt's own
TopicAccessControlListPlugin wants a static per-user list and its subscribe ACL breaks plugin
loading in 0.12.1; a rule "your own username" is a few lines of our own instead.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker, BrokerContext, RetainedApplicationMessage
from amqtt.contexts import Action
from amqtt.errors import BrokerError, PluginError, PluginLoadError
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin, BaseTopicPlugin
from amqtt.session import Session

from caterva.broker import access, broker_url
from caterva.errors import StateError
from caterva.service.runner import bind, ready

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


class PasswordAuth(BaseAuthPlugin):
    """Accounts of the password file; anonymous clients and wrong passwords are refused, and
    so is a last will outside the client's own subtree (amqtt does not check wills itself)."""

    @dataclass
    class Config:
        accounts: dict[str, str] = field(default_factory=dict)  # username -> $7$ hash

    async def authenticate(self, *, session: Session) -> bool:
        hashed = self.config.accounts.get(session.username or "")
        if hashed is None:
            return False
        # PBKDF2 takes milliseconds: off the loop that serves every other client
        if not await asyncio.to_thread(access.verify_password, session.password or "", hashed):
            return False
        if session.will_flag and not access.may_publish(session.username, session.will_topic):
            log.info("refusing %s: its last will is outside its own topics", session.username)
            return False
        return True


class TopicAccess(BaseTopicPlugin):
    """Publish only under caterva/v1/pub/<username>/ (and discover); read under caterva/v1/."""

    @dataclass
    class Config:
        pass

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool:
        username = session.username if session else None
        if not username:
            return False
        if action == Action.PUBLISH:
            return access.may_publish(username, topic)
        return access.may_read(topic)


class _NoRepeat(logging.Filter):
    """amqtt says "N messages not broadcasted" twice while it shuts down: once is enough."""

    def __init__(self) -> None:
        super().__init__()
        self._last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        repeated, self._last = message == self._last, message
        return not repeated


def broker_config(
    statedir: Path, accounts: dict[str, str] | None = None, metrics: bool = False
) -> dict:
    plugins: dict = {f"{__name__}.RetainedStore": {"path": str(statedir / "retained.sqlite3")}}
    if metrics:
        from caterva.broker.metrics import PLUGIN

        plugins[PLUGIN] = {}
    if accounts:
        plugins[f"{__name__}.PasswordAuth"] = {"accounts": accounts}
        plugins[f"{__name__}.TopicAccess"] = {}
    else:
        plugins["amqtt.plugins.authentication.AnonymousAuthPlugin"] = {"allow_anonymous": True}
    return {"listeners": {LISTENER: {"type": "external"}}, "plugins": plugins}


def serve(
    host: str,
    port: int,
    statedir: Path,
    accounts: dict[str, str] | None = None,
    tls: tuple[str, str] | None = None,
    metrics_sock=None,
) -> None:
    sock = bind(host, port)  # raises Unavailable naming host:port
    asyncio.run(_serve(sock, statedir, accounts, tls, metrics_sock))


async def _serve(sock, statedir: Path, accounts=None, tls=None, metrics_sock=None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    try:
        broker = Broker(broker_config(statedir, accounts, metrics=metrics_sock is not None))
        await broker.start()
    except (BrokerError, PluginError, PluginLoadError) as exc:
        reason = exc.__cause__ or exc  # amqtt wraps the real error (e.g. an unopenable database)
        raise StateError(f"the embedded MQTT broker did not start: {reason}") from exc

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await broker.external_connected(
            StreamReaderAdapter(reader), StreamWriterAdapter(writer), LISTENER
        )

    context = None
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
    server = await asyncio.start_server(connected, sock=sock, ssl=context)
    scraped = None
    if metrics_sock is not None:
        from caterva.broker.metrics import registry
        from caterva.service.metrics import listen

        scraped = await listen(metrics_sock, registry(broker))
    host, port = sock.getsockname()[:2]
    url = broker_url(host, port, tls=bool(tls))
    log.info("MQTT broker (amqtt, embedded) listening on %s; state in %s", url, statedir)
    ready("broker", url)
    try:
        await stop.wait()
    finally:
        log.info("stopping the MQTT broker")
        logging.getLogger("amqtt.broker").addFilter(_NoRepeat())
        server.close()  # no new connections while amqtt closes the current ones
        if scraped is not None:
            scraped.close()
        try:
            # amqtt's shutdown now and then waits forever on a client's handler: bound it
            await asyncio.wait_for(broker.shutdown(), SHUTDOWN_GRACE)
        except TimeoutError:
            log.warning("the MQTT broker did not stop within %s s; exiting anyway", SHUTDOWN_GRACE)
