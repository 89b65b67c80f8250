"""The subscriber daemon, composed from settings: ``create_app(settings, url)``.

    state (SQLite) -> cache (chunk files; reconciled after a crash) -> upstream HTTP client
    -> discovery + trust + follower (+ its events and their freshness) + read path -> local
    handoff socket (downloads on this machine) -> pinned roots -> inbox (MQTT in) on every
    broker -> prober (HTTP, of sources MQTT cannot vouch for) -> mirror (MQTT out, with
    --republish) -> metrics (/metrics, /v1/status) -> ready

Each part is registered with an AsyncExitStack as soon as it exists, so a start that fails
halfway releases what it had, and a stop releases everything last-in first-out. What the
routes use is the lifespan state (``Parts``): nothing is a module global.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypedDict

from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from caterva import logs
from caterva.mqtt import BrokerURL, Bus
from caterva.protocol.topics import check_pub_id
from caterva.service import auth, http, runner, source_api
from caterva.subscriber import api, c2compat, metrics, selections, status, upstream
from caterva.subscriber.cache import Cache
from caterva.subscriber.discovery import Directory
from caterva.subscriber.events import Events
from caterva.subscriber.follower import Follower
from caterva.subscriber.freshness import Freshness
from caterva.subscriber.handoff import Handoff
from caterva.subscriber.inbox import Inbox
from caterva.subscriber.mirror import LoopGuard, Mirror, via_hook
from caterva.subscriber.pins import Pace, Pins
from caterva.subscriber.probe import Prober
from caterva.subscriber.read import ReadPath
from caterva.subscriber.settings import SubscriberSettings
from caterva.subscriber.source import FollowedSource
from caterva.subscriber.state import State
from caterva.subscriber.trust import Trust
from caterva.subscriber.web import routes as web

log = logging.getLogger("caterva.subscriber")

SYNC_GRACE = 3.0  # seconds a request waits at start for the broker's retained hints


class Parts(TypedDict):
    """The lifespan state: what routes find as ``request.state.<name>``."""

    follower: Follower
    read: ReadPath
    events: Events
    cache: Cache
    pins: Pins
    bus: Bus  # our own broker's
    buses: list[Bus]  # every broker's, ours first
    mirror: Mirror | None
    source: FollowedSource  # what the source API serves
    handoff: Handoff | None  # None: no local socket here (see handoff.py)
    freshness: Freshness
    metrics: CollectorRegistry  # /metrics (metrics.py)


def create_app(settings: SubscriberSettings, url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Parts]:
        async with AsyncExitStack() as stack:
            parts = await start(settings, url, stack)
            loop = asyncio.get_running_loop()
            app.state.on_exit = [lambda: parts["events"].close(loop)]
            await runner.ready_with_brokers("subscriber", url, parts["buses"])
            yield parts

    app = FastAPI(
        title="caterva subscriber",
        version="1",
        description="Follow roots, read datasets on demand, and (as a source) serve their chunks.",
        lifespan=lifespan,
        dependencies=[Depends(auth.authorize)],  # deny by default with --auth (service/auth.py)
    )
    http.install(app)
    app.add_middleware(LoopGuard)
    app.include_router(api.router)
    app.include_router(selections.router)
    app.include_router(status.router)
    app.include_router(metrics.router)
    app.include_router(source_api.router(root_errors=(409,), read_errors=(502, 503)))
    auth.install(app, settings.security, settings.statedir)  # --auth, --require-token
    c2compat.install(app)  # the Caterva2 API, for blosc2.C2Array and caterva2.Client
    web.install(app)  # the page at / (caterva/subscriber/web)
    return app


async def start(settings: SubscriberSettings, url: str, stack: AsyncExitStack) -> Parts:
    """Every part of a running subscriber, each one's release registered on ``stack``."""
    state = State(settings.statedir / "state.db")
    stack.callback(state.close)
    cache = Cache(state, settings.statedir / "chunks", settings.cache_size)
    cache.reconcile()
    stack.callback(cache.flush_uses)
    announce_on = settings.republish_broker or settings.brokers[0]
    pub_id = None
    if settings.republish:  # under broker auth the ACL confines us to caterva/v1/pub/<user>/#
        pub_id = check_pub_id(
            settings.pub_id or BrokerURL.parse(announce_on).username or state.identity()
        )
    # a mirror names itself on every request upstream (loop backstop, see mirror.py)
    latency = metrics.upstream_latency()
    hooks = metrics.timing_hooks(latency)
    if pub_id:
        hooks["request"].append(via_hook(pub_id))
    client = upstream.new_client(event_hooks=hooks, **settings.security.source_client_options())
    stack.push_async_callback(client.aclose)
    directory = Directory(
        self_id=pub_id,
        prefer=settings.prefer,
        seed=state.identity(),
        presence_ttl=settings.presence_ttl,
    )
    events = Events()
    follower = Follower(state, cache, directory, client, events, Trust(state, settings.trusted))
    read = ReadPath(follower, cache, directory, client)
    directory.listeners.append(follower.on_offer)
    handoff: Handoff | None = Handoff()
    try:
        await handoff.start()
        stack.push_async_callback(handoff.stop)
    except OSError as exc:  # no AF_UNIX here (a sandbox): clients on this machine use /file
        log.info("no local handoff socket: %s", exc)
        handoff = None
    pins = Pins(state, cache, follower, read, Pace(settings.pin_rate))
    pins.want(settings.pin)
    events.listeners.append(pins.on_event)
    freshness = Freshness(follower)
    events.listeners.append(freshness.on_event)
    directory.listeners.append(pins.on_offer)
    stack.push_async_callback(pins.stop)  # before the client it fetches with is closed
    name = f"caterva-sub-{secrets.token_hex(4)}"
    inbox = Inbox(directory, follower, name, heard=freshness.on_change)
    buses = [Bus(broker, client_id=f"{name}-{i}") for i, broker in enumerate(settings.brokers)]
    for i, bus in enumerate(buses):
        inbox.listen(bus, i)
    directory.linked = lambda i: buses[i].connected.is_set()
    probing = asyncio.create_task(Prober(directory, client).run(), name="prober")
    stack.push_async_callback(lambda: _cancel(probing))
    mirror = None
    if pub_id:
        mirror = Mirror(
            pub_id=pub_id,
            session=secrets.token_hex(8),
            url=settings.advertise or url,
            broker=announce_on,
            follower=follower,
            directory=directory,
        )
        mirror.origin_time = freshness.origin_time
        events.listeners.append(mirror.on_event)
        directory.listeners.append(mirror.on_offer)
    # stopped together: with its broker away, each waits up to a second for paho's thread
    stopping = [*buses, *([mirror] if mirror else [])]
    stack.push_async_callback(lambda: asyncio.gather(*(part.stop() for part in stopping)))
    for bus in buses:
        await bus.start()
    # with our broker away, stop waiting for its hints: report what we know (nothing)
    asyncio.get_running_loop().call_later(SYNC_GRACE, directory.synced.set)
    if mirror:
        await mirror.start()
    pins.start()
    log.info(
        "subscriber serving %s (brokers %s, cache %s of %s used; state in %s)%s",
        url,
        ", ".join(str(b.url) for b in buses),
        logs.size(cache.used),
        logs.size(settings.cache_size),
        settings.statedir,
        f"; republishing as {mirror.pub_id} on {mirror.bus.url}" if mirror else "",
    )
    return Parts(
        follower=follower,
        read=read,
        events=events,
        cache=cache,
        pins=pins,
        bus=buses[0],
        buses=buses,
        mirror=mirror,
        source=FollowedSource(follower, read, cache),
        handoff=handoff,
        freshness=freshness,
        metrics=metrics.registry(
            metrics.SubscriberCollector(cache, follower, read, freshness, buses), latency
        ),
    )


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
