"""The publisher as an ASGI app: ``create_app(settings)``; everything shared lives in lifespan
state (catalog, announcer, stats, metrics), nothing in module globals.

    startup:  state store -> signing key -> catalog from last announced state -> first scan
              (changes made while we were down; none on a first start) -> MQTT bus
              (connects in the background) -> watcher -> ready
    running:  watcher: look at the paths inotify names, a full scan every rescan_interval
              (or every scan_interval with --poll, or where inotify fails)
              -> change events + re-announcement
    shutdown: watcher stops -> offline status -> bus disconnects -> store closes
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import Depends, FastAPI
from prometheus_client import Histogram

from caterva.publisher import api, metrics
from caterva.publisher.announce import Announcer
from caterva.publisher.catalog import Catalog
from caterva.publisher.notify import Changes
from caterva.publisher.settings import Settings
from caterva.publisher.signing import Sealer, load_key
from caterva.publisher.source import CatalogSource
from caterva.publisher.stats import Stats, StatsMiddleware
from caterva.publisher.store import Store
from caterva.service import http, source_api
from caterva.service.runner import ready_with_brokers

log = logging.getLogger("caterva.publisher")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict]:
        store = await asyncio.to_thread(Store.open, settings.statedir)
        watcher = announcer = None
        changes = Changes(settings.directory, settings.statedir)
        try:
            pub_id, fresh = await asyncio.to_thread(store.identity)
            pub_id = settings.pub_id or pub_id  # --pub-id, or the MQTT username (broker ACLs)
            sealer = Sealer(
                await asyncio.to_thread(load_key, settings.statedir),
                store,
                root=settings.name,
                origin=pub_id,
            )
            catalog = Catalog(
                settings.name,
                settings.directory,
                settings.statedir / "frames",
                known=await asyncio.to_thread(store.load),
                frame_chunksize=settings.frame_chunksize,
                sealer=sealer,
                open_files=settings.open_files,
            )
            scans = metrics.scans()
            started = time.perf_counter()
            first = await asyncio.to_thread(catalog.scan)
            scans.labels(settings.name, "full").observe(time.perf_counter() - started)
            log.info("root %s is signed with key %s", settings.name, sealer.key)
            announcer = Announcer(
                name=settings.name,
                url=settings.url,
                pub_id=pub_id,
                session=secrets.token_hex(8),
                broker=settings.broker,
                catalog=catalog,
                store=store,
                key=sealer.key,
            )
            if fresh:  # a first publication is told by the announcement, not by N creates
                await asyncio.to_thread(store.save_all, first.entries.values())
            else:  # what changed while we were down; queued until the broker is there
                await announcer.changed(first)
            del first  # not kept for the life of the app: a diff per file on a first start
            await announcer.start()
            watching = not settings.poll and changes.start()
            watcher = asyncio.create_task(
                watch(catalog, announcer, settings, changes if watching else None, scans)
            )
            await ready_with_brokers("publisher", settings.url, [announcer.bus])
            stats = Stats()
            yield {
                "settings": settings,
                "catalog": catalog,
                "announcer": announcer,
                "stats": stats,
                "source": CatalogSource(catalog, stats),
                "metrics": metrics.registry(catalog, stats, announcer, scans),
            }
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            changes.close()
            if announcer is not None:
                await announcer.stop()
            await asyncio.to_thread(store.close)

    app = FastAPI(
        title="caterva publisher",
        summary=f"Source API of root {settings.name!r}: manifest, dataset info, chunks, files.",
        version="1",
        lifespan=lifespan,
    )
    http.install(app)
    app.add_middleware(StatsMiddleware)
    app.include_router(source_api.router(read_errors=(503,)), dependencies=[Depends(api.count)])
    app.include_router(api.router)
    app.include_router(metrics.router)
    return app


async def watch(
    catalog: Catalog,
    announcer: Announcer,
    settings: Settings,
    changes: Changes | None,
    scans: Histogram | None = None,
) -> None:
    """Look at what ``changes`` names as it happens, and at everything every rescan_interval;
    without ``changes`` (polling), at everything every scan_interval. What a look finds turns
    into change events and a re-announcement."""
    scans = scans or metrics.scans()  # how long each look takes, for /metrics
    loop = asyncio.get_running_loop()
    full_at = loop.time() + settings.rescan_interval
    while True:
        if changes is not None and not changes.complete:
            changes = None  # a directory could not be watched: poll everything
        if changes is None:
            await asyncio.sleep(settings.scan_interval)
            paths = None
        else:
            paths = await changes.wait(max(0.0, full_at - loop.time()))
            if paths is not None and not paths and loop.time() < full_at:
                continue
        if paths is None or loop.time() >= full_at:
            look, full_at, kind = catalog.scan, loop.time() + settings.rescan_interval, "full"
        else:
            look, kind = partial(catalog.refresh, paths), "paths"
        try:
            started = time.perf_counter()
            result = await asyncio.to_thread(look)
            scans.labels(settings.name, kind).observe(time.perf_counter() - started)
            await announcer.changed(result)
        except asyncio.CancelledError:
            raise
        except Exception:  # one failed look must not end watching
            log.exception("scanning %s failed", catalog.name)
