"""The subscriber daemon: state, cache, MQTT discovery and the HTTP API, built from settings.

Everything shared lives in the lifespan state (one HTTP client, one MQTT bus, one cache);
nothing is a module global.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
from contextlib import asynccontextmanager

from fastapi import FastAPI

from caterva import fetch
from caterva.cache import Cache
from caterva.mqtt import Bus
from caterva.protocol import topics
from caterva.protocol.messages import Change, Discover
from caterva.errors import ProtocolError
from caterva.state import State
from services import serve
from services.http import install_error_handlers
from services.subscriber.api import router
from services.subscriber.discovery import Directory
from services.subscriber.follower import Follower
from services.subscriber.settings import SubscriberSettings

log = logging.getLogger("caterva.subscriber")


def create_app(settings: SubscriberSettings, url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        statedir = settings.statedir
        tmp = statedir / "tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        state = State(statedir / "state.db")
        cache = Cache(state, statedir / "chunks", settings.cache_size)
        cache.reconcile()
        client = fetch.new_client()
        directory = Directory()
        follower = Follower(state, cache, directory, client)
        name = f"caterva-sub-{secrets.token_hex(4)}"
        bus = Bus(settings.broker, client_id=name)

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

        async def on_connect() -> None:
            follower.reset_cursors()  # events may have been missed while disconnected
            await bus.publish(topics.DISCOVER, Discover(sender=name).to_bytes())
            await follower.resync_all()

        bus.subscribe(topics.ALL_STATUS, directory.on_message)
        bus.subscribe(topics.ALL_ROOTS, directory.on_message)
        bus.subscribe(f"{topics.PREFIX}/pub/+/changes/+", on_change)
        bus.on_connect(on_connect)
        loop = asyncio.get_running_loop()
        app.state.on_exit = [lambda: follower.close_watchers(loop)]
        await bus.start()
        log.info(
            "subscriber serving %s (broker %s, cache %s of %s bytes used)",
            url, bus.url, cache.used, settings.cache_size,
        )
        serve.ready("subscriber", url)
        try:
            yield {"follower": follower, "cache": cache, "tmp": tmp, "bus": bus}
        finally:
            await bus.stop()
            await client.aclose()
            state.close()

    app = FastAPI(
        title="caterva subscriber",
        version="1",
        description="Follow roots, read datasets on demand, and (as a source) serve their chunks.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(router)
    return app
