"""Follow roots and keep them fresh, from signed manifests only: which roots we follow, the
current version of each of their datasets, and the syncing that moves them on.

Following a root costs one manifest request; it records each dataset's layout and digests.
Every manifest, from whichever source, is verified before it is used: signed by the key the
root is bound to (trust.py), sealing exactly the content received, and not older than what we
hold (caterva.protocol.seal). A source whose manifest fails is skipped (and, unless it is only
behind or signed by another key, not used again for its session); the next one is tried.

Change events and announcements are hints: one that says the root moved on (another manifest
etag) makes a resync, which fetches the manifest (a 304 when nothing changed) and reconciles,
so a forged event can cost a request but never change or hide a dataset. Resyncs of a root
are coalesced: events that arrive during one make one more, not one each. Work on one root is
serialised by a lock.

A dataset's version is a Dataset object: a change makes a new one, so a reader holding one
reads one version (read.py). Whatever changes a dataset is told as an event (events.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable

import httpx

from caterva.errors import (
    CatervaError,
    KeyChanged,
    NotFollowed,
    SourceOffline,
    UnknownDataset,
    UnknownRoot,
    UntrustedSource,
)
from caterva.protocol.listing import Listing
from caterva.protocol.messages import Change
from caterva.protocol.metadata import info_of, manifest_etag, spliced
from caterva.protocol.names import check_path
from caterva.protocol.rootetag import RootEtag
from caterva.protocol.seal import Seal
from caterva.subscriber.cache import Cache
from caterva.subscriber.discovery import Directory, Offer
from caterva.subscriber.events import Events
from caterva.subscriber.state import Dataset, State
from caterva.subscriber.trust import Trust
from caterva.subscriber.upstream import Source

log = logging.getLogger("caterva.subscriber")


Told = tuple[str, str, "list[int] | None", "str | None"]  # (op, path, chunks, etag)


def _plan(
    held: dict[str, Dataset], manifest: Listing
) -> tuple[list[str], list[tuple[str, str, str]], list[Told]]:
    """What ``manifest`` changes in ``held``: the paths gone, the (path, etag, text) rows new
    or changed, and the changes to tell (the gone ones first, then one per row)."""
    if manifest.since is None:
        gone = [p for p in held if p not in manifest.datasets]
    else:
        gone = [p for p in manifest.removed if p in held]
    rows = [
        (path, etag, text)
        for path, (etag, text) in manifest.datasets.items()
        if (known := held.get(path)) is None or known.etag != etag
    ]
    changes: list[Told] = [("delete", path, None, None) for path in gone]
    for path, etag, text in rows:
        old = held.get(path)
        if old is None:
            changes.append(("create", path, None, etag))
        else:
            changes.append(("update", path, old.info.changed_chunks(info_of(text)), etag))
    return gone, rows, changes


class Behind(SourceOffline):
    """A source serves an older version of a root than we hold: not offline, not to be read."""


class Follower:
    def __init__(
        self,
        state: State,
        cache: Cache,
        directory: Directory,
        client: httpx.AsyncClient,
        events: Events,
        trust: Trust | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.cache = cache
        self.directory = directory
        self.client = client
        self.events = events
        self.trust = trust or Trust(state, clock=clock)
        self.clock = clock
        self.etags = state.followed()  # root -> manifest etag we are synced to
        self.seals: dict[str, Seal] = state.seals()  # root -> the seal of that manifest
        self.datasets: dict[str, dict[str, Dataset]] = defaultdict(dict)
        for ds in state.datasets():
            self.datasets[ds.root][ds.path] = ds
        self._sources: dict[str, str | None] = {}  # root -> URL we read it from (None: offline)
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._resyncing: set[str] = set()
        self._again: set[str] = set()  # roots told to resync while one was running
        self._tasks: set[asyncio.Task] = set()
        self._manifests: dict[str, tuple[str, bytes]] = {}  # encoded on demand, dropped on change
        self._root_etags: dict[str, RootEtag] = {}  # of what we hold, to verify deltas fast
        self.problems: dict[str, str] = {}  # root -> why its last resync failed

    # --- what we follow --------------------------------------------------------------------

    def followed(self, root: str) -> dict[str, Dataset]:
        if root not in self.etags:
            if root in self.directory.roots():
                raise NotFollowed(f"root {root!r} is not followed: run `caterva follow {root}`")
            raise UnknownRoot(f"unknown root {root!r}")
        return self.datasets[root]

    def manifest_body(self, root: str) -> tuple[str, bytes]:
        """(etag, JSON) of what we hold of a followed root, with its origin's seal: the
        manifest we serve as a mirror."""
        if root not in self._manifests:
            datasets = self.followed(root)
            etag = manifest_etag(root, ((p, d.etag) for p, d in datasets.items()))
            seal = self.seals.get(root)
            head = {"root": root, "etag": etag, "seal": seal and seal.to_dict()}
            self._manifests[root] = (etag, spliced(head, (d.text for d in datasets.values())))
        return self._manifests[root]

    def dataset(self, root: str, path: str) -> Dataset:
        """The current version of a dataset; hold it to read that version throughout."""
        datasets = self.followed(root)
        ds = datasets.get(check_path(path))
        if ds is None:
            raise UnknownDataset(f"no dataset {path!r} in root {root!r}")
        return ds

    # --- following -------------------------------------------------------------------------

    async def follow(
        self, root: str, admit: Callable[[Listing], None] | None = None
    ) -> Listing | None:
        """Follow ``root``; ``admit`` may refuse it (raise) once its manifest is verified,
        before anything is recorded (pins.py: a pin that cannot fit)."""
        if root in self.etags:
            return None
        offer, manifest = await self._signed_manifest(root)
        if admit is not None:
            admit(manifest)
        async with self._locks[root]:
            self.state.follow(root, self.clock())
            self.etags[root] = None
            self._sources[root] = offer.url
            await self._reconcile(root, manifest)  # all new: the follow event says so
        self.events.emit(root, "follow", datasets=len(manifest.datasets))
        return manifest

    async def unfollow(self, root: str) -> None:
        self.followed(root)
        async with self._locks[root]:
            for ds_id in self.state.unfollow(root):
                self.cache.drop(ds_id)
            for table in (
                self._root_etags,
                self.etags,
                self.datasets,
                self._manifests,
                self._sources,
                self.seals,
                self.problems,
            ):
                table.pop(root, None)
        self.events.emit(root, "unfollow")

    async def resync(self, root: str) -> None:
        """Reconcile a followed root with a verified manifest of one of its sources."""
        if root not in self.etags:
            return
        async with self._locks[root]:
            _, manifest = await self._signed_manifest(root, self.etags[root])
            if manifest is not None:
                for op, path, chunks, etag in await self._reconcile(root, manifest):
                    self.events.emit(root, op, path=path, chunks=chunks, etag=etag)
                self.events.emit(root, "resync", datasets=len(self.datasets[root]))

    async def _signed_manifest(
        self, root: str, etag: str | None = None
    ) -> tuple[Offer, Listing | None]:
        """A verified manifest of ``root`` (None: still ``etag``), from the first source that
        can give one, best first."""
        await self.directory.synced.wait()
        tried: set[str] = set()
        error: CatervaError | None = None
        while offer := next(iter(self.directory.candidates(root, tried)), None):
            tried.add(offer.pub_id)
            try:
                # parsed off the loop, each dataset's etag checked against its content
                manifest = await Source(self.client, offer.url).manifest(root, etag)
                self.directory.answered(offer, True)
                if manifest is not None:
                    if manifest.root != root:
                        raise UntrustedSource(f"asked for {root!r}, got {manifest.root!r}")
                    if manifest.since is not None and manifest.since != etag:
                        raise UntrustedSource(f"a delta of {root!r} from another version")
                    seal = await asyncio.to_thread(self._verify, root, manifest)
                    self._accept(root, seal)
                return offer, manifest
            except KeyChanged as exc:  # not its fault alone: the admin may trust the key
                error = exc
            except UntrustedSource as exc:
                log.warning("not reading %s from %s (%s): %s", root, offer.pub_id, offer.url, exc)
                self.directory.distrust(offer)
                error = exc
            except Behind as exc:
                error = exc
            except SourceOffline as exc:
                self.directory.answered(offer, False)
                error = exc
        if error is not None:
            raise error
        self.directory.source(root)  # says why there is none: unknown, or offline
        raise SourceOffline(f"every source of root {root!r} is offline")

    def _verify(self, root: str, manifest: Listing) -> Seal:
        """The seal of ``manifest`` once its etag is computed (in a worker thread): from its
        datasets, or for a delta from ours with its changes made (the root lock is held:
        ours do not move meanwhile)."""
        if manifest.since is None:
            pairs = ((p, etag) for p, (etag, _) in manifest.datasets.items())
            return manifest.verify(manifest_etag(root, pairs))
        index = self._root_etags.get(root)
        if index is None:  # made once, then kept as the root changes
            held = self.datasets[root]
            index = self._root_etags[root] = RootEtag(root, {p: d.etag for p, d in held.items()})
        return manifest.verify(index.etag_with(manifest.changes))

    def _accept(self, root: str, seal: Seal) -> None:
        """Bind the seal's key to the root (or refuse it), and refuse a rollback."""
        self.trust.check(root, seal, self.directory.origin_key(root))
        held = self.seals.get(root)
        if held is None or held.key != seal.key:
            return
        if seal.version < held.version:
            raise Behind(
                f"a source of {root!r} is behind (version {seal.version}, we hold {held.version})"
            )
        if seal.version == held.version and seal.manifest_etag != held.manifest_etag:
            raise UntrustedSource(f"two manifests of {root!r} are signed as version {seal.version}")

    async def _reconcile(self, root: str, manifest: Listing) -> list[Told]:
        """Make a root match a verified ``manifest``, in one transaction; returns (op, path,
        changed chunks, etag) per dataset that changed (chunks None: all of them). What
        grows with the root (comparing, storing) runs in worker threads, so the loop goes on
        answering while 100,000 datasets are stored; the root's lock keeps it ours."""
        held = self.datasets[root]
        gone, rows, changes = await asyncio.to_thread(_plan, held, manifest)
        for path in gone:  # before their rows go: the cache counts what it drops
            self.cache.drop(held[path])
        for op, path, chunks, _ in changes[len(gone) :]:
            if op == "update":
                self.cache.drop(held[path], chunks)

        def store() -> dict[str, Dataset]:  # in a worker thread
            gone_ids = [held[path].id for path in gone]
            ids = self.state.synced(root, gone_ids, rows, manifest.etag, manifest.seal)
            if manifest.since is None:
                self._root_etags.pop(root, None)  # made again from what we hold if needed
            elif root in self._root_etags:
                self._root_etags[root].apply(manifest.changes)
            return {p: Dataset(ids[p], root, p, etag, text) for p, etag, text in rows}

        new = await asyncio.to_thread(store)
        for path in gone:
            del held[path]
        held.update(new)
        self.etags[root] = manifest.etag
        self.seals[root] = manifest.seal
        self._manifests.pop(root, None)
        return changes

    # --- hints: change events and announcements --------------------------------------------

    async def on_change(self, pub_id: str, change: Change) -> None:
        """A change event is a hint: from the source we read, or the root's origin, naming
        another manifest than ours, it makes a resync."""
        root = change.root
        offer = self.directory.choose(root)
        if root not in self.etags or offer is None:
            return
        ours = pub_id in (offer.pub_id, offer.announcement.origin)
        if ours and change.manifest_etag != self.etags[root]:
            self.resync_soon(root)

    def on_offer(self, root: str, offer: Offer | None) -> None:
        """A root's chosen source appeared, changed or re-announced: resync if it is another
        source (it may be at another version) or announces another manifest."""
        if root not in self.etags:
            return
        source = offer.url if offer else None
        moved = self._sources.get(root, "") != source
        if moved:
            self._sources[root] = source
            self.events.emit(root, "source", online=offer is not None, url=source)
        if offer and (moved or offer.announcement.manifest_etag != self.etags[root]):
            self.resync_soon(root)

    def resync_soon(self, root: str) -> None:
        """Resync ``root`` in the background; asked again meanwhile, once more after."""
        if root in self._resyncing:
            self._again.add(root)
            return
        self._resyncing.add(root)
        self._spawn(self._resync_until_settled(root))

    async def _resync_until_settled(self, root: str) -> None:
        try:
            while True:
                self._again.discard(root)
                await self._resync_quietly(root)
                if root not in self._again:
                    return
        finally:
            self._resyncing.discard(root)

    async def _resync_quietly(self, root: str) -> None:
        try:
            await self.resync(root)
        except CatervaError as exc:
            if self.problems.get(root) != str(exc):  # one line per new problem, not per try
                log.warning("could not resync %s: %s", root, exc)
            self.problems[root] = str(exc)
        else:
            self.problems.pop(root, None)

    async def resync_all(self) -> None:
        for root in list(self.etags):
            await self._resync_quietly(root)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
