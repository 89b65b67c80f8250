"""``GET /ui/events``: what the open page should know, as server-sent events (EventSource).

Two feeds of the running subscriber, merged: the change events of followed roots (the very
stream ``GET /v1/events`` serves, events.py) and the directory's news of any root (a root
announced, withdrawn, its chosen source gone offline or back), told as ``{"root", "event":
"offer", "online"}``. Each event is shown only to a user who may read its root, asked per
event as on the API, so a revoke also ends what an open page hears.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from caterva.protocol.names import check_root
from caterva.service.auth import may_read
from caterva.subscriber.web import guard
from caterva.subscriber.web.render import page

QUEUE = 1000  # events held for a page that reads slowly; past that they are dropped
KEEPALIVE = 15.0  # seconds between comments that keep an idle stream open through proxies


@page
async def events(request: Request) -> Response:
    guard.user(request)
    root = request.query_params.get("root")
    if root is not None:
        guard.require(request, check_root(root))
    stream = _merged(request, root)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


async def _merged(request: Request, root: str | None) -> AsyncIterator[str]:
    queue: asyncio.Queue[dict | None] = asyncio.Queue(QUEUE)
    lost = False

    def put(event: dict) -> None:
        nonlocal lost
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            lost = True  # the page is told once it has caught up (below)

    def on_offer(name: str, offer) -> None:
        put({"root": name, "event": "offer", "online": offer is not None})

    async def changes() -> None:
        async for event in request.state.events.watch():
            put(event)
        while True:  # the service is stopping: the end must get through, even past a full queue
            try:
                return queue.put_nowait(None)
            except asyncio.QueueFull:
                queue.get_nowait()

    directory = request.state.follower.directory
    directory.listeners.append(on_offer)
    pump = asyncio.create_task(changes())
    await asyncio.sleep(0)  # the pump's first step: it is watching now
    try:
        yield "event: ready\ndata: {}\n\n"  # from here on, the page misses nothing
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if event is None:
                return
            if (root is None or event["root"] == root) and may_read(request, event["root"]):
                yield f"data: {json.dumps(event)}\n\n"
            if lost and queue.empty():  # events were dropped: the page reloads what it shows
                lost = False
                yield 'data: {"event": "overflow"}\n\n'
    finally:
        directory.listeners.remove(on_offer)
        pump.cancel()
