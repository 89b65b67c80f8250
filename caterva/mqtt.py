"""An asyncio facade over paho-mqtt: the one place caterva talks MQTT.

paho runs its network loop in its own thread; messages cross into the event loop through
``call_soon_threadsafe`` and are dispatched in order by one task, so handlers run on the loop
and never race each other. The bus reconnects by itself (paho's loop does), resubscribes, and
calls the ``on_connect`` hooks after every (re)connect: that is where sources re-announce and
subscribers resync. MQTT 3.1.1 is used because every broker speaks it (amqtt speaks only it).

A broker that cannot be reached (or refuses us, or goes away) is one WARNING per outage, with
the reason and the next retry; each further retry is a DEBUG line; connecting again is INFO.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from caterva.errors import BadRequest, BrokerUnavailable

log = logging.getLogger("caterva.mqtt")

Handler = Callable[[str, bytes], Awaitable[None] | None]
Hook = Callable[[], Awaitable[None]]
RETRY_MIN, RETRY_MAX = 1, 5  # seconds between connection attempts: doubling, capped


class _Client(paho.Client):
    """paho's client, keeping why the last connection attempt failed (paho drops it)."""

    failure: str = ""

    def reconnect(self) -> paho.MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError as exc:
            self.failure = exc.strerror or str(exc) or type(exc).__name__
            raise


@dataclass(frozen=True)
class BrokerURL:
    """``mqtt[s]://[USER[:PASSWORD]@]HOST[:PORT][?cafile=PATH]``: where the broker is, and
    everything needed to reach it, in the one string every service already passes on."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    cafile: str | None = None  # verify an mqtts broker against this CA (default: the system's)

    @classmethod
    def parse(cls, url: str) -> BrokerURL:
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise BadRequest(f"invalid broker URL {url!r}: use mqtt://HOST:PORT or mqtts://...")
        try:
            port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        except ValueError as exc:
            raise BadRequest(f"invalid broker URL {url!r}: bad port") from exc
        query = parse_qs(parts.query)
        return cls(
            host=parts.hostname,
            port=port,
            tls=parts.scheme == "mqtts",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            cafile=query["cafile"][-1] if query.get("cafile") else None,
        )

    @classmethod
    def checked(cls, url: str) -> BrokerURL:
        """``parse``, and the CA file it names is there: for a service about to start, so a
        missing one is a usage error then, not ssl's traceback at the first connection."""
        parsed = cls.parse(url)
        if parsed.cafile and not os.path.isfile(parsed.cafile):
            raise BadRequest(f"broker {parsed}: no CA file {parsed.cafile}")
        return parsed

    def __str__(self) -> str:  # never shows the password
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def full(self) -> str:
        """The URL with credentials and CA: for passing on, never for printing."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        query = f"?{urlencode({'cafile': self.cafile})}" if self.cafile else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{auth}{host}:{self.port}{query}"


def with_credentials(
    url: str,
    username: str | None = None,
    password: str | None = None,
    cafile: str | None = None,
) -> str:
    """``url`` with what flags and env add to it (``--broker-user``, CATERVA_BROKER_PASSWORD,
    a CA file); what the URL itself says wins."""
    parsed = BrokerURL.parse(url)
    return replace(
        parsed,
        username=parsed.username or username or None,
        password=parsed.password or password or None,
        cafile=parsed.cafile or cafile or None,
    ).full()


class Bus:
    """One MQTT connection. Create, add subscriptions and hooks, ``await start()``."""

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        will: tuple[str, bytes] | None = None,
        keepalive: int = 15,
        cafile: str | None = None,
    ) -> None:
        self.url = BrokerURL.parse(url)
        self._client = _Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        if self.url.username:
            self._client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            context = ssl.create_default_context(cafile=cafile or self.url.cafile)
            self._client.tls_set_context(context)
        if will:
            self._client.will_set(will[0], will[1], qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=RETRY_MIN, max_delay=RETRY_MAX)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._keepalive = keepalive
        self._subscriptions: list[tuple[str, Handler]] = []
        self._hooks: list[Hook] = []
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()
        self.refused: str | None = None  # why the broker refused us, if it did
        # paho's thread only: is the connection up, the retry delay paho is at (it keeps its
        # own: this follows the same rule), and since when an outage has been logged
        self._up = False
        self._delay: float | None = None
        self._outage: float | None = None

    def subscribe(self, pattern: str, handler: Handler) -> None:
        """Deliver messages matching ``pattern`` to ``handler`` (kept across reconnects)."""
        self._subscriptions.append((pattern, handler))
        if self.connected.is_set():
            self._client.subscribe(pattern, qos=1)

    def on_connect(self, hook: Hook) -> None:
        """Run ``hook`` after every successful (re)connect."""
        self._hooks.append(hook)

    async def start(self, timeout: float | None = None) -> None:
        """Start connecting; with ``timeout``, wait that long for the first connection."""
        self._loop = asyncio.get_running_loop()
        self._dispatcher = asyncio.create_task(self._dispatch(), name="mqtt-dispatch")
        self._client.connect_async(self.url.host, self.url.port, keepalive=self._keepalive)
        self._client.loop_start()
        if timeout is not None:
            await self.wait_connected(timeout)

    async def wait_connected(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except TimeoutError:
            reason = self.refused or "no answer"
            raise BrokerUnavailable(
                f"cannot connect to the MQTT broker at {self.url}: {reason}"
            ) from None

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1, timeout: float = 5
    ) -> bool:
        """Publish; with QoS 1 wait for the broker's ack. False when it did not come in time."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        # NO_CONN: paho queued it for the next connection, so an ack may still come
        if qos == 0 or info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            return info.rc == paho.MQTT_ERR_SUCCESS
        future = self._loop.create_future()
        self._acks[info.mid] = future
        # acked between publish() and registering the future (is_published raises on NO_CONN)
        if info.rc == paho.MQTT_ERR_SUCCESS and info.is_published():
            self._acks.pop(info.mid, None)
            return True
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._acks.pop(info.mid, None)

    async def stop(self, final: list[tuple[str, bytes]] = ()) -> None:
        """Publish ``final`` messages (retained, acked), then disconnect cleanly."""
        if self.connected.is_set():
            for topic, payload in final:
                await self.publish(topic, payload, retain=True, timeout=2)
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        if self._dispatcher:
            self._inbox.put_nowait(None)
            await self._dispatcher

    # --- paho's thread -------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
            self._failed(f"refused: {reason_code}")
            return
        self.refused = None
        self._up, self._delay = True, None
        if self._outage is None:
            log.info("connected to MQTT broker %s", self.url)
        else:
            log.info(
                "connected to MQTT broker %s after %.0f s",
                self.url,
                time.monotonic() - self._outage,
            )
            self._outage = None
        if self._subscriptions:
            # one SUBSCRIBE for all: every retained message they match is sent before anything
            # we publish next is handled (the subscriber's start-up barrier relies on it)
            client.subscribe([(pattern, 1) for pattern, _ in self._subscriptions])
        self._loop.call_soon_threadsafe(self._connected)

    def _on_connect_fail(self, client, userdata) -> None:
        self.refused = self.refused or "connection refused or unreachable"
        self._failed(client.failure or "unreachable")

    def _failed(self, reason: str) -> None:
        """A connection attempt failed; paho retries after its next delay."""
        self._delay = RETRY_MIN if self._delay is None else min(2 * self._delay, RETRY_MAX)
        if self._outage is None:
            self._outage = time.monotonic()
            log.warning(
                "waiting for broker %s (%s), retrying in %g s", self.url, reason, self._delay
            )
        else:
            log.debug(
                "still waiting for broker %s (%s), retrying in %g s", self.url, reason, self._delay
            )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._loop.call_soon_threadsafe(self.connected.clear)
        was_up, self._up = self._up, False
        if reason_code != 0 and was_up:  # not a refused attempt: that was said by _failed
            self._delay, self._outage = RETRY_MIN, time.monotonic()  # paho waits, then retries
            log.warning("lost the MQTT broker %s (%s); reconnecting", self.url, reason_code)

    def _on_message(self, client, userdata, message) -> None:
        self._loop.call_soon_threadsafe(self._inbox.put_nowait, (message.topic, message.payload))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._loop.call_soon_threadsafe(self._acked, mid)

    # --- the event loop ------------------------------------------------------------------------

    def _connected(self) -> None:
        self.connected.set()
        for hook in self._hooks:
            task = asyncio.create_task(self._run_hook(hook))
            self._running.add(task)  # a task without a reference can be collected mid-way
            task.add_done_callback(self._running.discard)

    async def _run_hook(self, hook: Hook) -> None:
        try:
            await hook()
        except Exception:  # a hook's failure must not take the bus down
            log.exception("MQTT on-connect hook failed")

    def _acked(self, mid: int) -> None:
        future = self._acks.get(mid)
        if future and not future.done():
            future.set_result(None)

    async def _dispatch(self) -> None:
        while (item := await self._inbox.get()) is not None:
            topic, payload = item
            for pattern, handler in self._subscriptions:
                if paho.topic_matches_sub(pattern, topic):
                    try:
                        result = handler(topic, payload)
                        if result is not None:
                            await result
                    except Exception:  # one bad message must not stop the others
                        log.exception("MQTT handler for %s failed on %s", pattern, topic)
