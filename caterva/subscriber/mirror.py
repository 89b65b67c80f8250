"""Republishing: a subscriber serves the roots it follows to its LAN as a mirror.

    follow, or the upstream's hop chain moved -> retained announcement: our URL, the origin,
                                                 the upstream's hops + [our pub_id]
    a dataset changed (event or resync)       -> our own change event (our session, seq per
                                                 root), then the announcement (new etag)
    unfollow                                  -> empty retained announcement: withdrawn
    connect, discover                         -> status online + every announcement
    clean shutdown                            -> status offline           (caterva.service.presence)

The pub_id is made once and kept in the state database, so downstream preferences and hop
chains survive restarts. The source API itself is the subscriber's (caterva.subscriber.api):
a miss is fetched through from the upstream and verified before it is cached or served.

Loops: discovery never picks a source whose hop chain holds our pub_id. As a backstop for the
moments before announcements settle, every request we make upstream names the mirrors it went
through (``rest.VIA_HEADER``, added by ``via_hook``) and ``LoopGuard`` answers 503 at once to a
request that already went through us, so a loop fails one read instead of cycling.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar

import httpx
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from caterva.errors import SourceOffline
from caterva.protocol import rest, topics
from caterva.protocol.messages import Announcement, Change
from caterva.service.presence import Presence
from caterva.subscriber.discovery import Directory, Offer
from caterva.subscriber.follower import Follower

log = logging.getLogger("caterva.mirror")

CHANGES = ("create", "update", "delete")

# the mirrors the request being served came through (from its VIA_HEADER)
_VIA: ContextVar[tuple[str, ...]] = ContextVar("caterva_via", default=())


class Mirror:
    def __init__(
        self,
        *,
        pub_id: str,
        session: str,
        url: str,
        broker: str,
        follower: Follower,
        directory: Directory,
    ) -> None:
        self.pub_id, self.url = pub_id, url
        self.follower, self.directory = follower, directory
        self.presence = Presence(
            broker,
            pub_id=pub_id,
            session=session,
            url=url,
            role="mirror",
            announce=self._announce_all,
        )
        self.bus = self.presence.bus
        self.bus.subscribe(topics.roots_of(pub_id), self._on_own_announcement)
        self._chains: dict[str, tuple[str, list[str]]] = {}  # root -> upstream (origin, hops)
        self._sent: dict[str, bytes] = {}  # root -> the announcement last published
        self._seq: Counter[str] = Counter()  # change events sent per root this session
        self._work: asyncio.Queue[tuple[str, str, dict | None, str | None]] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        # when the origin made a version of a root, if known (freshness.py; app.py wires)
        self.origin_time: Callable[[str, str | None], float | None] = lambda root, etag: None

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="mirror")
        await self.presence.start()

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        await self.presence.stop()

    # --- what comes in (sync: events of the follower, choices of the directory; app.py wires)

    def on_event(self, event: dict) -> None:
        root, kind = event["root"], event["event"]
        if kind in CHANGES:
            # the root's manifest etag right after this change, for the event we pass on
            self._work.put_nowait((kind, root, event, self.follower.etags.get(root)))
        elif kind in ("follow", "resync", "unfollow"):
            self._work.put_nowait((kind, root, None, None))

    def on_offer(self, root: str, offer: Offer | None) -> None:
        if offer is not None and root in self.follower.etags:
            self._work.put_nowait(("source", root, None, None))  # the chain may have moved

    async def _on_own_announcement(self, topic: str, payload: bytes) -> None:
        parsed = topics.parse(topic)
        if payload and parsed and parsed.root not in self.follower.etags:
            log.info("withdrawing %s: announced by an earlier run, no longer followed", parsed.root)
            await self.bus.publish(topic, b"", retain=True)

    # --- what goes out ------------------------------------------------------------------------

    async def _run(self) -> None:
        stale: set[str] = set()  # roots whose announcement may be out of date
        while True:
            kind, root, event, manifest_etag = await self._work.get()
            try:
                async with self.presence.lock:
                    if kind == "unfollow":
                        stale.discard(root)
                        await self._withdraw(root)
                    else:
                        stale.add(root)
                        if event is not None:
                            await self._send_change(root, event, manifest_etag)
                    if self._work.empty():  # a resync's events first, then one announcement
                        while stale:
                            await self._announce(stale.pop())
            except Exception:  # one failed publish must not end republishing
                log.exception("republishing %s failed", root)
            finally:
                self._work.task_done()

    def announcement(self, root: str) -> Announcement | None:
        """What we say about ``root`` now; None until we know where it comes from."""
        offer = self.directory.choose(root)
        if offer is not None:  # when the upstream is offline we still serve what we hold
            self._chains[root] = (offer.announcement.origin, offer.announcement.hops)
        chain = self._chains.get(root)
        if chain is None or self.follower.etags.get(root) is None:
            return None
        origin, hops = chain
        return Announcement(
            root=root,
            url=self.url,
            session=self.presence.session,
            manifest_etag=self.follower.etags[root],
            datasets=len(self.follower.datasets[root]),
            origin=origin,
            hops=[*hops, self.pub_id],
        )

    async def _announce(self, root: str, again: bool = False) -> None:
        """Publish the announcement of ``root`` if it says something new (or ``again``)."""
        announcement = self.announcement(root)
        if announcement is None or not self.bus.connected.is_set():
            return  # the next connect announces everything
        payload = announcement.to_bytes()
        if not again and self._sent.get(root) == payload:
            return
        if await self.bus.publish(topics.root(self.pub_id, root), payload, retain=True):
            self._sent[root] = payload

    async def _announce_all(self) -> None:
        for root in list(self.follower.etags):
            await self._announce(root, again=True)

    async def _withdraw(self, root: str) -> None:
        self._sent.pop(root, None)
        self._chains.pop(root, None)
        self._seq.pop(root, None)
        if self.bus.connected.is_set():
            await self.bus.publish(topics.root(self.pub_id, root), b"", retain=True)

    async def _send_change(self, root: str, event: dict, manifest_etag: str | None) -> None:
        self._seq[root] += 1  # counted even if never delivered: a gap makes readers resync
        change = Change(
            root=root,
            path=event["path"],
            op=event["event"],
            session=self.presence.session,
            seq=self._seq[root],
            manifest_etag=manifest_etag or "",
            etag=event.get("etag"),
            chunks=event.get("chunks"),
            time=self.origin_time(root, manifest_etag),  # the origin's, for downstream lags
        )
        if self.bus.connected.is_set():
            await self.bus.publish(topics.changes(self.pub_id, root), change.to_bytes())


def via_hook(pub_id: str):
    """An httpx request hook: name this mirror (after the ones the request came through) on
    every request it makes upstream."""

    async def tag(request: httpx.Request) -> None:
        request.headers[rest.VIA_HEADER] = ",".join((*_VIA.get(), pub_id))

    return tag


class LoopGuard:
    """ASGI middleware: refuse (503) a request that already went through this mirror, and
    remember the others' path for the requests serving it makes upstream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mirror = scope.get("state", {}).get("mirror") if scope["type"] == "http" else None
        header = rest.VIA_HEADER.lower().encode()
        raw = next((v for k, v in scope.get("headers", ()) if k == header), None)
        if mirror is None or raw is None:
            await self.app(scope, receive, send)
            return
        via = tuple(p.strip() for p in raw.decode("latin-1").split(",") if p.strip())
        if mirror.pub_id in via:
            error = SourceOffline(f"request loop: it already went through {mirror.pub_id}")
            await JSONResponse(error.to_payload(), error.status)(scope, receive, send)
            return
        token = _VIA.set(via)
        try:
            await self.app(scope, receive, send)
        finally:
            _VIA.reset(token)
