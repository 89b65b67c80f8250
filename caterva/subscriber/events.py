"""What happened to the followed roots, told as it happens: to ``listeners`` (a republishing
mirror passes events on downstream) and to every open watch (``GET /v1/events``).

An event is a dict: ``root``, ``event`` (follow, unfollow, resync, source, create, update,
delete), ``time``, and for dataset events ``path``, ``chunks`` (changed indices, None: all)
and ``etag``. Listeners are called first, after the state moved, so a mirror announces the
new version before a watcher can ask it for that version.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

WATCH_QUEUE = 10_000  # events held for a watcher that reads slowly


class Events:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.listeners: list[Callable[[dict], None]] = []
        self._watchers: set[asyncio.Queue[dict | None]] = set()

    def emit(self, root: str, event: str, **detail) -> None:
        message = {"root": root, "event": event, "time": self.clock(), **detail}
        for listener in self.listeners:
            listener(message)
        for queue in self._watchers:
            queue.put_nowait(message)

    async def watch(self) -> AsyncIterator[dict]:
        queue: asyncio.Queue[dict | None] = asyncio.Queue(maxsize=WATCH_QUEUE)
        self._watchers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._watchers.discard(queue)

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        """End every watch (the service is stopping). Safe from a signal handler."""
        for queue in list(self._watchers):
            loop.call_soon_threadsafe(queue.put_nowait, None)
