"""A source's presence on a broker: its pub_id, a session per run, and the retained status that
says whether it is online.

    connect   -> status online (retained), then the owner's ``announce()``
    discover  -> the same again (anyone may ask; the payload is only informative)
    own offline status of another session -> online again (a previous run's late last will
                 must not hide this one)
    stop      -> status offline, explicitly (a clean disconnect drops the will), disconnect

``lock`` orders what the owner publishes (status, change events, announcements), so they leave
in the order they were decided. ``announce()`` runs with the lock held.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from caterva.errors import CatervaError
from caterva.mqtt import Bus
from caterva.protocol import topics
from caterva.protocol.messages import Status

log = logging.getLogger("caterva.presence")


class Presence:
    def __init__(
        self,
        broker: str,
        *,
        pub_id: str,
        session: str,
        url: str,
        role: str,
        announce: Callable[[], Awaitable[None]],
    ) -> None:
        self.pub_id, self.session, self.url = pub_id, session, url
        self.lock = asyncio.Lock()
        self._announce = announce
        self._stale: set[str] = set()  # sessions whose offline status we replaced: said once
        self.bus = Bus(
            broker,
            client_id=f"caterva-{role}-{pub_id}-{session[:8]}",
            will=(topics.status(pub_id), self.status("offline")),
        )
        self.bus.on_connect(self.birth)
        self.bus.subscribe(topics.DISCOVER, self._on_discover)
        self.bus.subscribe(topics.status(pub_id), self._on_own_status)

    def status(self, state: str) -> bytes:
        return Status(state, self.session, self.url).to_bytes()

    async def start(self) -> None:
        await self.bus.start()  # no wait: serving goes on while the broker is away

    async def stop(self) -> None:
        await self.bus.stop(final=[(topics.status(self.pub_id), self.status("offline"))])

    async def birth(self) -> None:
        async with self.lock:
            await self.bus.publish(topics.status(self.pub_id), self.status("online"), retain=True)
            await self._announce()

    async def _on_discover(self, topic: str, payload: bytes) -> None:
        await self.birth()

    async def _on_own_status(self, topic: str, payload: bytes) -> None:
        try:
            status = Status.from_bytes(payload)
        except CatervaError:
            return
        if status.state == "offline" and status.session != self.session:
            # the same stale status can come more than once (retained, then a late will)
            if status.session not in self._stale:
                self._stale.add(status.session)
                log.info("replacing a stale offline status of session %s", status.session)
            await self.bus.publish(topics.status(self.pub_id), self.status("online"), retain=True)
