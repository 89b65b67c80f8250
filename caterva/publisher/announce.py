"""The MQTT side of a publisher: birth and will, the retained root announcement, change events.

    (re)connect, discover -> status online (retained) -> pending change events -> announcement
    scan diffs  -> change events (QoS 1, seq 1, 2, ... per session) -> announcement
    shutdown    -> status offline, explicitly (a clean disconnect drops the will)

Status, birth and will are caterva/service/presence.py's, shared with mirrors.

Change events are queued and sent in order while the broker is reachable; the announcement
that follows carries the new manifest etag even if an event was not acknowledged (it is
retried), so readers learn of the change either way. The state store records a dataset as
announced only once its event was acknowledged, so changes that never reached the broker
are found and announced again after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from caterva.mqtt import Bus
from caterva.protocol import topics
from caterva.protocol.messages import Announcement, Change
from caterva.publisher.catalog import Catalog
from caterva.publisher.entry import Entry, ScanResult
from caterva.publisher.store import Store
from caterva.service.presence import Presence

log = logging.getLogger("caterva.publisher")

MAX_PENDING = 10_000  # events kept while the broker is away; older ones are dropped


class Announcer:
    def __init__(
        self,
        *,
        name: str,
        url: str,
        pub_id: str,
        session: str,
        broker: str,
        catalog: Catalog,
        store: Store,
        key: str | None = None,
    ) -> None:
        self.name, self.url, self.pub_id, self.session = name, url, pub_id, session
        self.key = key  # our signing key: subscribers may learn it from our own announcement
        self.catalog = catalog
        self.store = store
        self.seq = 0
        self.sent = 0  # change events the broker acknowledged (for /metrics)
        self.last_change: float | None = None  # when a scan last found a change (Unix time)
        self._pending: deque[tuple[Change, Entry | None]] = deque()
        # status, birth on (re)connect and discover, stale-will repair: service/presence.py
        self.presence = Presence(
            broker, pub_id=pub_id, session=session, url=url, role="pub", announce=self._birth
        )

    @property
    def bus(self) -> Bus:
        return self.presence.bus

    @property
    def pending(self) -> int:
        """Change events waiting for the broker."""
        return len(self._pending)

    async def start(self) -> None:
        await self.presence.start()  # no wait: the REST API serves while the broker is away

    async def stop(self) -> None:
        await self.presence.stop()

    # --- what goes out ------------------------------------------------------------------------

    def announcement(self) -> Announcement:
        manifest = self.catalog.manifest
        return Announcement(
            root=self.name,
            url=self.url,
            session=self.session,
            manifest_etag=manifest.etag,
            datasets=len(manifest.datasets),
            origin=self.pub_id,
            hops=[self.pub_id],
            key=self.key,
        )

    async def _birth(self) -> None:
        """After the online status (lock held): pending events, then the announcement."""
        await self._flush()
        await self._announce()

    async def changed(self, result: ScanResult) -> None:
        """Queue one change event per diff of a scan, then send what the broker will take."""
        waiting = {change.path for change, _ in self._pending}
        # same content, new stat: only the cache moves on (a path with an event in flight
        # waits for its acknowledgement instead)
        rows = [e for e in result.refreshed if e.path not in waiting]
        if rows:
            await asyncio.to_thread(self.store.save_all, rows)
        manifest_etag = self.catalog.manifest.etag
        if result.diffs:
            self.last_change = time.time()
        async with self.presence.lock:  # a flush in progress owns the head of the queue
            for d in result.diffs:
                self.seq += 1  # counted even if never delivered: a gap makes readers resync
                change = Change(
                    root=self.name,
                    path=d.path,
                    op=d.op,
                    session=self.session,
                    seq=self.seq,
                    manifest_etag=manifest_etag,
                    etag=d.new.etag if d.new else None,
                    chunks=d.chunks,
                    time=self.last_change,
                )
                self._pending.append((change, result.entries.get(d.path)))
                if len(self._pending) > MAX_PENDING:
                    dropped, entry = self._pending.popleft()
                    await self._commit(dropped.path, entry)
            if self._pending and self.bus.connected.is_set():  # with earlier unacked events
                await self._flush()
                await self._announce()

    async def _flush(self) -> None:
        while self._pending and self.bus.connected.is_set():
            change, entry = self._pending[0]
            topic = topics.changes(self.pub_id, self.name)
            if not await self.bus.publish(topic, change.to_bytes(), qos=1):
                log.warning("change event %d not acknowledged; will retry", change.seq)
                return
            self._pending.popleft()
            self.sent += 1
            await self._commit(change.path, entry)

    async def _commit(self, path: str, entry: Entry | None) -> None:
        """Record ``path`` as announced in its new state (or gone)."""
        if entry is None:
            await asyncio.to_thread(self.store.delete, path)
        else:
            await asyncio.to_thread(self.store.save, entry)

    async def _announce(self) -> None:
        topic = topics.root(self.pub_id, self.name)
        await self.bus.publish(topic, self.announcement().to_bytes(), retain=True)
