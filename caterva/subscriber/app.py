"""The subscriber daemon: state, cache, MQTT discovery and the HTTP API, built from settings.

Everything shared lives in the lifespan state (one HTTP client, the MQTT buses, one cache);
nothing is a module global. Discovery listens on every broker given (the first is our own);
with republish on, a Mirror announces the followed roots on the republish broker.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from caterva import logs
from caterva.subscriber import upstream
from caterva.subscriber.cache import Cache
from caterva.mqtt import Bus, BrokerURL
from caterva.protocol import topics
from caterva.protocol.topics import check_pub_id
from caterva.protocol.messages import Change, Discover
from caterva.errors import ProtocolError
from caterva.subscriber.state import State
from caterva.service import runner
from caterva.service import auth, http
from caterva.subscriber.api import router
from caterva.subscriber.discovery import Directory
from caterva.subscriber.follower import Follower
from caterva.subscriber.mirror import LoopGuard, Mirror, via_hook
from caterva.subscriber.settings import SubscriberSettings
from caterva.subscriber.trust import Trust

log = logging.getLogger("caterva.subscriber")

SYNC_GRACE = 3.0  # seconds a request waits at start for the broker's retained hints


def create_app(settings: SubscriberSettings, url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        statedir = settings.statedir
        state = State(statedir / "state.db")
        cache = Cache(state, statedir / "chunks", settings.cache_size)
        cache.reconcile()
        announce_on = settings.republish_broker or settings.brokers[0]
        # under broker auth the ACL confines a source to caterva/v1/pub/<username>/#
        pub_id = None
        if settings.republish:
            pub_id = check_pub_id(settings.pub_id or BrokerURL.parse(announce_on).username
                                  or state.identity())
        # a mirror names itself on every request upstream (loop backstop, see mirror.py)
        client = upstream.new_client(event_hooks={"request": [via_hook(pub_id)]} if pub_id else None,
                                  **settings.security.source_client_options())
        directory = Directory(self_id=pub_id, prefer=settings.prefer)
        follower = Follower(state, cache, directory, client, Trust(state, settings.trusted))
        name = f"caterva-sub-{secrets.token_hex(4)}"

        async def on_change(topic: str, payload: bytes) -> None:
            parsed = topics.parse(topic)
            if parsed is None or parsed.kind != "changes":
                return
            try:
                change = Change.from_bytes(payload)
            except ProtocolError as exc:
                log.warning("ignoring a bad change event on %s: %s", topic, exc)
                return
            await follower.on_change(parsed.pub_id, change)

        def listen(index: int, broker: str) -> Bus:
            bus = Bus(broker, client_id=f"{name}-{index}")

            def hints(topic: str, payload: bytes) -> None:
                directory.on_message(topic, payload, broker=index)

            def on_discover(topic: str, payload: bytes) -> None:
                # our own discover, heard back, comes after every retained message matched by
                # our subscriptions (one SUBSCRIBE, see Bus): the start-up barrier
                try:
                    heard = Discover.from_bytes(payload)
                except ProtocolError:
                    return
                if index == 0 and heard.sender == name:
                    directory.synced.set()

            async def on_connect() -> None:  # events may have been missed while disconnected
                await bus.publish(topics.DISCOVER, Discover(sender=name).to_bytes())
                await follower.resync_all()

            bus.subscribe(topics.ALL_STATUS, hints)
            bus.subscribe(topics.ALL_ROOTS, hints)
            bus.subscribe(topics.DISCOVER, on_discover)
            bus.subscribe(f"{topics.PREFIX}/pub/+/changes/+", on_change)
            bus.on_connect(on_connect)
            return bus

        buses = [listen(i, broker) for i, broker in enumerate(settings.brokers)]
        mirror = None
        if pub_id:
            mirror = Mirror(
                pub_id=pub_id, session=secrets.token_hex(8), url=settings.advertise or url,
                broker=announce_on,
                follower=follower, directory=directory,
            )
        loop = asyncio.get_running_loop()
        app.state.on_exit = [lambda: follower.close_watchers(loop)]
        for bus in buses:
            await bus.start()
        # with our broker away, stop waiting for its hints: report what we know (nothing)
        loop.call_later(SYNC_GRACE, directory.synced.set)
        if mirror:
            await mirror.start()
        log.info(
            "subscriber serving %s (brokers %s, cache %s of %s used; state in %s)%s",
            url, ", ".join(str(b.url) for b in buses), logs.size(cache.used),
            logs.size(settings.cache_size), statedir,
            f"; republishing as {mirror.pub_id} on {mirror.bus.url}" if mirror else "",
        )
        runner.ready("subscriber", url)
        try:
            yield {"follower": follower, "cache": cache, "bus": buses[0],
                   "mirror": mirror}
        finally:
            # together: with its broker away, each waits up to a second for paho's thread
            stopping = [bus.stop() for bus in buses] + ([mirror.stop()] if mirror else [])
            await asyncio.gather(*stopping)
            await client.aclose()
            cache.flush_uses()
            state.close()

    app = FastAPI(
        title="caterva subscriber",
        version="1",
        description="Follow roots, read datasets on demand, and (as a source) serve their chunks.",
        lifespan=lifespan,
        dependencies=[Depends(auth.authorize)],  # deny by default with --auth (caterva/service/auth.py)
    )
    http.install(app)
    app.add_middleware(LoopGuard)
    app.include_router(router)
    auth.install(app, settings.security, settings.statedir)  # --auth, --require-token
    return app
