"""Follow roots and keep them fresh.

Following a root costs one manifest request; it records each dataset's layout and digests.
A change event fetches the dataset's new info and drops only the chunks whose digest changed;
a delete drops the dataset. A gap in ``seq``, a new source session, a new manifest etag in an
announcement, a change of source, or a reconnect all lead to a resync: the manifest is fetched
again (a 304 when nothing changed) and reconciled, which also removes datasets deleted while we
were away. Work on one root is serialised by a lock, so events and resyncs never interleave.

Whatever changes a dataset, an event or a resync, is told as a create/update/delete event
(with the changed chunks) to watchers and to ``listeners`` (a republishing mirror passes them
on downstream).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx

from caterva.cache import Cache, Wanted
from caterva.errors import (
    CatervaError,
    DigestMismatch,
    NotFollowed,
    SourceOffline,
    UnknownDataset,
    UnknownRoot,
)
from caterva.fetch import Source
from caterva.protocol.messages import Change
from caterva.protocol.metadata import DatasetInfo, Manifest
from caterva.protocol.names import check_path
from caterva.state import Dataset, State
from services.subscriber.discovery import Directory, Offer

log = logging.getLogger("caterva.subscriber")


@dataclass(frozen=True)
class Cursor:
    """Where we are in a source's change stream."""

    pub_id: str
    session: str
    seq: int


class Follower:
    def __init__(
        self,
        state: State,
        cache: Cache,
        directory: Directory,
        client: httpx.AsyncClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.cache = cache
        self.directory = directory
        self.client = client
        self.clock = clock
        self.etags = state.followed()  # root -> manifest etag we are synced to
        self.datasets: dict[str, dict[str, Dataset]] = defaultdict(dict)
        for ds in state.datasets():
            self.datasets[ds.root][ds.path] = ds
        self._cursors: dict[str, Cursor] = {}
        self._sources: dict[str, str | None] = {}  # root -> URL we read it from (None: offline)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._watchers: set[asyncio.Queue[dict]] = set()
        # called with every event as it happens, before watchers see it (after the state moved)
        self.listeners: list[Callable[[dict], None]] = []
        self._tasks: set[asyncio.Task] = set()
        self._manifests: dict[str, tuple[str, bytes]] = {}  # encoded on demand, dropped on change
        directory.listeners.append(self._on_offer)

    # --- reading ---------------------------------------------------------------------------

    def followed(self, root: str) -> dict[str, Dataset]:
        if root not in self.etags:
            if root in self.directory.roots():
                raise NotFollowed(f"root {root!r} is not followed: run `caterva follow {root}`")
            raise UnknownRoot(f"unknown root {root!r}")
        return self.datasets[root]

    def manifest_body(self, root: str) -> tuple[str, bytes]:
        """(etag, JSON) of what we hold of a followed root: the manifest we serve."""
        if root not in self._manifests:
            datasets = self.followed(root)
            manifest = Manifest(root=root, datasets=[d.info for d in datasets.values()])
            self._manifests[root] = (manifest.etag, manifest.to_bytes())
        return self._manifests[root]

    def dataset(self, root: str, path: str) -> Dataset:
        datasets = self.followed(root)
        ds = datasets.get(check_path(path))
        if ds is None:
            raise UnknownDataset(f"no dataset {path!r} in root {root!r}")
        return ds

    async def source(self, root: str) -> Source:
        await self.directory.synced.wait()
        try:
            offer = self.directory.source(root)
        except UnknownRoot:
            raise SourceOffline(f"no source of root {root!r} is known right now") from None
        return Source(self.client, offer.url)

    async def fetch(self, wanted: Wanted) -> AsyncIterator[tuple[Dataset, int, str, bytes]]:
        """The cache's fetcher: chunks of a root's datasets from its chosen source."""
        root = wanted[0][0].root
        source = await self.source(root)
        infos = [(ds.info, indices) for ds, indices in wanted]
        async for n, i, digest, data in source.chunks(root, infos):
            yield wanted[n][0], i, digest, data

    async def chunks(self, dataset: Dataset, indices: list[int]) -> dict[int, bytes]:
        return (await self.chunks_many([(dataset, indices)]))[0]

    async def chunks_many(self, wanted: Wanted) -> list[dict[int, bytes]]:
        """Chunks of a root's datasets through the cache; a digest mismatch means our info of
        that dataset is stale: refresh it, once."""
        try:
            return await self.cache.get_many(wanted, self.fetch)
        except DigestMismatch as exc:
            root = wanted[0][0].root
            await self.refresh(root, exc.detail["path"])
            fresh = [(self.dataset(root, ds.path), indices) for ds, indices in wanted]
            return await self.cache.get_many(fresh, self.fetch)

    # --- following -------------------------------------------------------------------------

    async def follow(self, root: str) -> Manifest | None:
        if root in self.etags:
            return None
        await self.directory.synced.wait()
        offer = self.directory.source(root)  # UnknownRoot or SourceOffline when there is none
        manifest = await Source(self.client, offer.url).manifest(root)
        async with self._locks[root]:
            self.state.follow(root, self.clock())
            self.etags[root] = None
            self._sources[root] = offer.url
            self._reconcile(root, manifest)  # every dataset is new: the follow event says so
        self._emit(root, "follow", datasets=len(manifest.datasets))
        return manifest

    async def unfollow(self, root: str) -> None:
        self.followed(root)
        async with self._locks[root]:
            for ds_id in self.state.unfollow(root):
                self.cache.drop(ds_id)
            self.etags.pop(root, None)
            self.datasets.pop(root, None)
            self._manifests.pop(root, None)
            self._cursors.pop(root, None)
            self._sources.pop(root, None)
        self._emit(root, "unfollow")

    async def resync(self, root: str) -> None:
        """Reconcile a followed root with its source's manifest."""
        if root not in self.etags:
            return
        async with self._locks[root]:
            source = await self.source(root)
            manifest = await source.manifest(root, self.etags[root])
            if manifest is not None:
                for op, path, chunks, etag in self._reconcile(root, manifest):
                    self._emit(root, op, path=path, chunks=chunks, etag=etag)
                self._emit(root, "resync", datasets=len(manifest.datasets))

    def _reconcile(
        self, root: str, manifest: Manifest
    ) -> list[tuple[str, str, list[int] | None, str | None]]:
        """Make a root match ``manifest``; returns (op, path, changed chunks, etag) per dataset
        that changed (chunks None: all of them)."""
        fresh = manifest.by_path()
        changes: list[tuple[str, str, list[int] | None, str | None]] = []
        for path in [p for p in self.datasets[root] if p not in fresh]:
            self._delete(root, path)
            changes.append(("delete", path, None, None))
        for info in manifest.datasets:
            known = self.datasets[root].get(info.path)
            if known is not None and known.info.etag == info.etag:
                continue
            chunks = self._apply(root, info)
            changes.append(("update" if known else "create", info.path, chunks, info.etag))
        self.state.set_manifest_etag(root, manifest.etag)
        self.etags[root] = manifest.etag
        return changes

    def _apply(self, root: str, info: DatasetInfo) -> list[int] | None:
        """Record a dataset's new info; drop the chunks it invalidates. Returns those."""
        self._manifests.pop(root, None)
        ds = self.datasets[root].get(info.path)
        if ds is None:
            ds_id = self.state.put_dataset(root, info)
            self.datasets[root][info.path] = Dataset(ds_id, root, info)
            return None
        if ds.info.etag == info.etag:
            return []
        changed = ds.info.changed_chunks(info)
        self.cache.drop(ds, changed)
        self.state.put_dataset(root, info)
        ds.info = info
        return changed

    def _delete(self, root: str, path: str) -> None:
        self._manifests.pop(root, None)
        ds = self.datasets[root].pop(path)
        self.cache.drop(ds)
        self.state.delete_dataset(ds.id)

    async def refresh(self, root: str, path: str) -> None:
        async with self._locks[root]:
            source = await self.source(root)
            self._apply(root, await source.info(root, path))

    # --- change events ---------------------------------------------------------------------

    async def on_change(self, pub_id: str, change: Change) -> None:
        root = change.root
        offer = self.directory.choose(root)
        if root not in self.etags or offer is None or offer.pub_id != pub_id:
            return  # not ours, or not from the source we read from
        cursor = self._cursors.get(root)
        if cursor and (cursor.pub_id, cursor.session) == (pub_id, change.session):
            if change.seq <= cursor.seq:
                return  # a duplicate (QoS 1 delivers at least once)
            in_order = change.seq == cursor.seq + 1
        else:  # the first event we see (the manifest covers what came before) or a new session
            in_order = cursor is None
        self._cursors[root] = Cursor(pub_id, change.session, change.seq)
        if not in_order:
            log.info("missed change events of %s; resyncing", root)
            await self.resync(root)
            return
        async with self._locks[root]:
            if change.op == "delete":
                if change.path in self.datasets[root]:
                    self._delete(root, change.path)
                changed = None
            else:
                info = await Source(self.client, offer.url).info(root, change.path)
                changed = self._apply(root, info)
            self.state.set_manifest_etag(root, change.manifest_etag)
            self.etags[root] = change.manifest_etag
        self._emit(root, change.op, path=change.path, chunks=changed, etag=change.etag)

    def reset_cursors(self) -> None:
        self._cursors.clear()

    def _on_offer(self, root: str, offer: Offer | None) -> None:
        """A root's chosen source appeared, changed or re-announced: resync if it is another
        source (it may be at another version) or announces another manifest."""
        if root not in self.etags:
            return
        source = offer.url if offer else None
        moved = self._sources.get(root, "") != source
        if moved:
            self._sources[root] = source
            self._emit(root, "source", online=offer is not None, url=source)
        if offer and (moved or offer.announcement.manifest_etag != self.etags[root]):
            self._spawn(self._resync_quietly(root))

    async def _resync_quietly(self, root: str) -> None:
        try:
            await self.resync(root)
        except CatervaError as exc:
            log.warning("could not resync %s: %s", root, exc)

    async def resync_all(self) -> None:
        for root in list(self.etags):
            await self._resync_quietly(root)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- watchers --------------------------------------------------------------------------

    def _emit(self, root: str, event: str, **detail) -> None:
        message = {"root": root, "event": event, "time": self.clock(), **detail}
        for listener in self.listeners:
            listener(message)
        for queue in self._watchers:
            queue.put_nowait(message)

    async def watch(self) -> AsyncIterator[dict]:
        queue: asyncio.Queue[dict | None] = asyncio.Queue(maxsize=10_000)
        self._watchers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._watchers.discard(queue)

    def close_watchers(self, loop: asyncio.AbstractEventLoop) -> None:
        """End every watch stream (the service is stopping). Safe from a signal handler."""
        for queue in list(self._watchers):
            loop.call_soon_threadsafe(queue.put_nowait, None)
