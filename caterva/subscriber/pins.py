"""Pinned roots: whole replicas, fetched ahead of demand, kept fresh, never evicted.

What WMO WIS2 global caches and Unidata LDM relays do: a LAN mirror that holds the night's
data before anyone asks, and serves it with the origin gone. A pinned root is a followed root
every chunk of whose current version is fetched in the background, at a bounded rate
(``Pace``), through the read path (read.py): sources are chosen and digests verified as for any
read, and what arrives lands in the cache. Its chunks are never evicted: the cache evicts what
``State.oldest`` offers, which skips pinned roots.

Fresh: whatever moves a root to a new version is told as an event (events.py), and the pinner
fetches the changed chunks then, not at the next read. A pass over a root compares the cache
index with the current digests, so it also picks up what a crash or a failed fetch left out;
a pass that fails is tried again with backoff, and at once when a source comes (back) online.

Budget: a pin is refused (PinTooLarge) when the root's stored bytes (its datasets' ``cbytes``)
exceed the budget less the other pinned roots' stored bytes. A pinned root that outgrows that
later keeps what fits, and its progress says how far behind it is and why.

Pins are kept in the state (``roots.pinned``) and survive restarts; the ``pin`` setting pins
roots at start, following each as soon as a source announces it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from caterva.errors import CatervaError, DatasetChanged, PinTooLarge
from caterva.logs import size
from caterva.protocol.metadata import DatasetInfo, info_of
from caterva.protocol.rest import pieces
from caterva.subscriber.cache import FETCH_BYTES, Cache, Wanted
from caterva.subscriber.discovery import Offer
from caterva.subscriber.follower import Follower
from caterva.subscriber.read import ReadPath
from caterva.subscriber.state import State

log = logging.getLogger("caterva.subscriber")

RETRY_FIRST, RETRY_MOST = 1.0, 60.0  # seconds before a failed pass is tried again (doubling)
PIECE_LEAST = 64 << 10  # the smallest request, however low the rate


def stored(infos: Iterable[DatasetInfo]) -> int:
    """The bytes a root's datasets take stored, as their sources say."""
    return sum(info.cbytes for info in infos)


class Pace:
    """At most ``rate`` bytes a second on average (0: no limit): after a fetch, wait until the
    bytes fetched so far are due. Idle time is not saved up, so a burst is one request."""

    def __init__(
        self,
        rate: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        self.rate, self.clock, self.sleep = rate, clock, sleep
        self._due = 0.0

    def piece(self) -> int:
        """Bytes to ask in one request: about a second's worth, within the cache's batches."""
        return FETCH_BYTES if not self.rate else min(FETCH_BYTES, max(PIECE_LEAST, self.rate))

    async def spent(self, nbytes: int) -> None:
        if not self.rate:
            return
        now = self.clock()
        self._due = max(self._due, now) + nbytes / self.rate
        if self._due > now:
            await self.sleep(self._due - now)


class Pins:
    def __init__(
        self,
        state: State,
        cache: Cache,
        follower: Follower,
        read: ReadPath,
        pace: Pace | None = None,
    ) -> None:
        self.state, self.cache, self.follower, self.read = state, cache, follower, read
        self.pace = pace or Pace(0)
        self.roots: set[str] = state.pinned()
        self.problems: dict[str, str] = {}  # root -> why its replica is behind
        # roots to compare with the cache: the paths that changed, or None for all of it
        self._dirty: dict[str, set[str] | None] = dict.fromkeys(self.roots)
        self._wake = asyncio.Event()
        self._wake.set()
        self._backoff: dict[str, float] = {}  # root -> seconds before the next retry
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._wanted: set[str] = set()  # roots of the pin setting, not pinned yet
        self._heard = asyncio.Event()  # a source of a wanted root announced it
        self._tasks: list[asyncio.Task] = []
        # root -> (what it was computed from, the figures): /v1/roots asks on every call, and a
        # scan of a big root takes 0.3-0.5 s on the event loop
        self._progress: dict[str, tuple[tuple, tuple[int, int, int]]] = {}

    # --- pinning -----------------------------------------------------------------------------

    async def pin(self, root: str) -> None:
        """Follow ``root`` if need be, and keep it whole; PinTooLarge when it cannot fit (a
        root not followed yet then stays so)."""
        if root in self.roots:
            return
        if root not in self.follower.etags:
            await self.follower.follow(
                root,
                admit=lambda m: self._check_fits(
                    root, (info_of(text) for _, text in m.datasets.values())
                ),
            )
        # again: another pin may have been taken while the manifest travelled
        self._check_fits(root, [ds.info for ds in self.follower.followed(root).values()])
        self.state.pin(root, True)
        self.roots.add(root)
        log.info("pinned %s: fetching every chunk ahead of demand", root)
        self._touch(root)

    def unpin(self, root: str) -> None:
        """Stop keeping ``root`` whole (it stays followed; its chunks become evictable)."""
        self.follower.followed(root)
        self.state.pin(root, False)
        self._forget(root)

    def _forget(self, root: str) -> None:
        self.roots.discard(root)
        self._progress.pop(root, None)
        self._dirty.pop(root, None)
        self.problems.pop(root, None)
        self._backoff.pop(root, None)
        if timer := self._timers.pop(root, None):
            timer.cancel()

    def _check_fits(self, root: str, infos: Iterable[DatasetInfo]) -> None:
        need = stored(infos)
        others = sum(
            stored(ds.info for ds in self.follower.datasets[r].values())
            for r in self.roots
            if r != root
        )
        room = max(self.cache.budget - others, 0)
        if need > room:
            beside = f" beside the other pinned roots ({size(others)})" if others else ""
            raise PinTooLarge(
                f"cannot pin {root}: it stores {size(need)}, more than the {size(room)} the "
                f"cache budget ({size(self.cache.budget)}) leaves{beside}: start the subscriber "
                f"with a larger --cache-size{', or unpin another root' if others else ''}",
                root=root,
                needed=need,
                room=room,
            )

    # --- the pin setting ---------------------------------------------------------------------

    def want(self, roots: Iterable[str]) -> None:
        """Pin these roots (the ``pin`` setting) at start, each as soon as it can be."""
        self._wanted.update(roots)

    def on_offer(self, root: str, offer: Offer | None) -> None:
        """A directory listener: a source of a wanted root spoke, so try it now."""
        if offer is not None and root in self._wanted:
            self._heard.set()

    async def _pin_wanted(self) -> None:
        delay, told = RETRY_FIRST, set()
        while self._wanted:
            for root in sorted(self._wanted):
                try:
                    await self.pin(root)
                except PinTooLarge as exc:
                    log.error("not pinning %s (the pin setting): %s", root, exc)
                except CatervaError as exc:  # not announced yet, say: wait for its source
                    if root not in told:
                        log.info("will pin %s when it can be followed: %s", root, exc)
                        told.add(root)
                    continue
                self._wanted.discard(root)
            if self._wanted:
                self._heard.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._heard.wait(), delay)
                delay = min(delay * 2, RETRY_MOST)

    # --- keeping replicas whole --------------------------------------------------------------

    def on_event(self, event: dict) -> None:
        """An events.py listener: what moved of a pinned root is compared with the cache."""
        root, kind = event["root"], event["event"]
        if root not in self.roots:
            return
        if kind == "unfollow":  # its state row, pin included, is gone
            self._forget(root)
        elif kind in ("create", "update"):  # only that dataset: a big root is not rescanned
            self._touch(root, event["path"])
        elif kind == "source" and event.get("online"):  # a source is back: try what failed
            self._touch(root)
        # delete and resync bring nothing to fetch: every dataset a resync changed has its event

    def _touch(self, root: str, path: str | None = None) -> None:
        if path is None:
            self._dirty[root] = None
        elif root not in self._dirty:
            self._dirty[root] = {path}
        elif (paths := self._dirty[root]) is not None:
            paths.add(path)
        self._wake.set()

    def start(self) -> None:
        if self.roots:
            log.info("keeping pinned roots whole: %s", ", ".join(sorted(self.roots)))
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._run(), name="pins"))
        if self._wanted:
            self._tasks.append(loop.create_task(self._pin_wanted(), name="pin-setting"))

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                root = min(self._dirty)
                await self._replicate_quietly(root, self._dirty.pop(root))

    async def _replicate_quietly(self, root: str, paths: set[str] | None = None) -> None:
        try:
            stuck = await self._replicate(root, paths)
        except CatervaError as exc:
            self._failed(root, str(exc))
        except Exception as exc:  # the pinner outlives a bug in one pass; the log tells it
            log.exception("replicating %s failed", root)
            self._failed(root, f"{type(exc).__name__}: {exc}")
        else:
            if stuck:
                self._failed(root, f"{stuck} chunks do not fit the cache budget")
            # only a pass over all of it says the replica is whole: a problem elsewhere stays
            elif paths is None and self.problems.pop(root, None) is not None:
                log.info("the replica of %s is whole again", root)
                self._backoff.pop(root, None)

    def _failed(self, root: str, problem: str) -> None:
        """Say why (once per new problem), and try again later."""
        if root not in self.roots:
            return
        if self.problems.get(root) != problem:
            log.warning("the replica of %s is behind: %s", root, problem)
        self.problems[root] = problem
        delay = self._backoff.get(root, RETRY_FIRST)
        self._backoff[root] = min(delay * 2, RETRY_MOST)
        if timer := self._timers.pop(root, None):
            timer.cancel()
        self._timers[root] = asyncio.get_running_loop().call_later(delay, self._touch, root)

    async def _replicate(self, root: str, paths: set[str] | None = None) -> int:
        """Fetch what the cache lacks of ``root``'s current version (of ``paths``, if given)
        until a scan finds it whole; returns how many chunks are missing still when the budget
        cannot keep them."""
        while root in self.roots:
            _, missing, _ = self._scan(root, paths)
            if not missing:
                return 0
            for piece, _ in pieces(missing, self.pace.piece()):
                if root not in self.roots:
                    return 0
                current = self.follower.datasets.get(root, {})
                # a dataset changed since the scan: its new version is the next scan's
                piece = [(ds, indices) for ds, indices in piece if current.get(ds.path) is ds]
                if not piece:
                    continue
                try:
                    got = await self.read.chunks_many(piece)
                except DatasetChanged:  # changed while fetched: the next scan sees it
                    continue
                await self.pace.spent(sum(len(data) for out in got for data in out.values()))
                if not self._kept(root, piece):  # the budget is full: the rest would not fit
                    return sum(len(indices) for _, indices in self._scan(root, paths)[1])
        return 0

    def _kept(self, root: str, piece: Wanted) -> bool:
        """Did the cache keep the chunks of ``piece`` that are still current?"""
        current = self.follower.datasets.get(root, {})
        for ds, indices in piece:
            if current.get(ds.path) is ds:
                present = self.state.present(ds.id, indices)
                if any(present.get(i, ("",))[0] != ds.info.digests[i] for i in indices):
                    return False
        return True

    def _scan(self, root: str, paths: set[str] | None = None) -> tuple[int, Wanted, int]:
        """(bytes held of the current version, the chunks missing, their estimated bytes), of
        the datasets at ``paths`` or of all (one query: 0.3 s for 100k chunks)."""
        datasets = self.follower.datasets.get(root, {})
        if paths is None:
            held, chosen = self.state.root_chunks(root), list(datasets.values())
        else:
            chosen = [datasets[p] for p in sorted(paths) if p in datasets]
            held = {(ds.id, i): v for ds in chosen for i, v in self.state.present(ds.id).items()}
        replicated = estimate = 0
        missing: Wanted = []
        for ds in chosen:
            gaps = []
            for i, digest in enumerate(ds.info.digests):
                found = held.get((ds.id, i))
                if found is not None and found[0] == digest:
                    replicated += found[1]
                else:
                    gaps.append(i)
            if gaps:
                missing.append((ds, gaps))
                estimate += len(gaps) * ds.info.chunk_cbytes
        return replicated, missing, estimate

    def progress(self, root: str) -> dict | None:
        """How whole a pinned root's replica is (None: not pinned): ``bytes`` held of
        ``total`` (exact once whole; estimated for what is missing), ``behind`` chunks."""
        if root not in self.roots:
            return None
        key = (self.state.version(), self.follower.etags.get(root))
        kept = self._progress.get(root)
        if kept is None or kept[0] != key:
            replicated, missing, estimate = self._scan(root)
            behind = sum(len(indices) for _, indices in missing)
            kept = self._progress[root] = (key, (replicated, replicated + estimate, behind))
        replicated, total, behind = kept[1]
        return {
            "bytes": replicated,
            "total": total,
            "behind": behind,
            "problem": self.problems.get(root),
        }
