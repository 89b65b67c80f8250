"""The publisher as an ASGI app: ``create_app(settings)``; everything shared lives in lifespan
state (catalog, announcer, stats), nothing in module globals.

    startup:  state store -> catalog from last announced state -> first scan (changes made
              while we were down; none on a first start) -> MQTT bus (connects in the
              background) -> watcher -> ready
    running:  watcher: scan every scan_interval -> change events + re-announcement
    shutdown: watcher stops -> offline status -> bus disconnects -> store closes
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.publisher import httperrors
from services.publisher.announce import Announcer
from services.publisher.api import router
from services.publisher.catalog import Catalog
from services.publisher.settings import Settings
from services.publisher.stats import Stats, StatsMiddleware
from services.publisher.store import Store
from services.serve import ready

log = logging.getLogger("caterva.publisher")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
        store = await asyncio.to_thread(Store.open, settings.statedir)
        watcher = announcer = None
        try:
            catalog = Catalog(
                settings.name, settings.directory, settings.statedir / "frames",
                known=await asyncio.to_thread(store.load),
                frame_chunksize=settings.frame_chunksize,
            )
            first = await asyncio.to_thread(catalog.scan)
            pub_id, fresh = await asyncio.to_thread(store.identity)
            announcer = Announcer(
                name=settings.name, url=settings.url, pub_id=pub_id, session=secrets.token_hex(8),
                broker=settings.broker, catalog=catalog, store=store,
            )
            if fresh:  # a first publication is told by the announcement, not by N creates
                rows = [(e.path, e.stat, e.info) for e in first.entries.values()]
                await asyncio.to_thread(store.save_all, rows)
            else:  # what changed while we were down; queued until the broker is there
                await announcer.changed(first)
            await announcer.start()
            watcher = asyncio.create_task(watch(catalog, announcer, settings.scan_interval))
            ready("publisher", settings.url)
            yield {"settings": settings, "catalog": catalog, "announcer": announcer,
                   "stats": Stats()}
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            if announcer is not None:
                await announcer.stop()
            await asyncio.to_thread(store.close)

    app = FastAPI(
        title="caterva publisher",
        summary=f"Source API of root {settings.name!r}: manifest, dataset info, chunks, files.",
        version="1",
        lifespan=lifespan,
    )
    httperrors.install(app)
    app.add_middleware(StatsMiddleware)
    app.include_router(router)
    return app


async def watch(catalog: Catalog, announcer: Announcer, interval: float) -> None:
    """Poll DIR; every scan that finds changes turns into events and a re-announcement."""
    while True:
        await asyncio.sleep(interval)
        try:
            result = await asyncio.to_thread(catalog.scan)
            await announcer.changed(result)
        except asyncio.CancelledError:
            raise
        except Exception:  # one failed scan must not end watching
            log.exception("scanning %s failed", catalog.name)
