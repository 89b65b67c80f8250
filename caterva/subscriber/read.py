"""The read path: chunks of one version of a dataset, from the cache, else from the root's
chosen source (fetched once for every reader who waits for it, verified, then cached).

A reader holds a Dataset (one version, see follower.py) for its whole request. A chunk that
does not match its digest means the source is at another version, or sent other bytes: the
root is resynced from a signed manifest, and then either that version is gone (the read fails
with DatasetChanged, and the client reads again from the top) or it is still current, and the
read is tried again: from the same source if it is the origin (a file rewritten between its
scan and our read), from another if it is a mirror (which serves only chunks it verified
against the version it announces, so it is not read from for a while).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial

import httpx

from caterva.errors import DatasetChanged, DigestMismatch, SourceOffline
from caterva.subscriber.cache import Cache, Wanted
from caterva.subscriber.discovery import Directory, Offer
from caterva.subscriber.follower import Follower
from caterva.subscriber.state import Dataset
from caterva.subscriber.upstream import Source

log = logging.getLogger("caterva.subscriber")

DISTRUST_SECONDS = 60.0  # a mirror whose chunks failed their digests is not read from for this


class ReadPath:
    def __init__(
        self, follower: Follower, cache: Cache, directory: Directory, client: httpx.AsyncClient
    ) -> None:
        self.follower, self.cache, self.directory, self.client = follower, cache, directory, client
        # (root, source pub_id) -> n, for /metrics (metrics.py)
        self.fetched = Counter[tuple[str, str]]()  # chunks received
        self.fetched_bytes = Counter[tuple[str, str]]()  # their compressed bytes
        self.digest_failures = Counter[tuple[str, str]]()  # reads that met a bad chunk

    async def fetch(
        self, wanted: Wanted, exclude: frozenset[str], used: list[Offer]
    ) -> AsyncIterator[tuple[Dataset, int, str, bytes]]:
        """The cache's fetcher: chunks of a root's datasets from the best source not in
        ``exclude``, appended to ``used`` (the read it serves blames it, if need be)."""
        root = wanted[0][0].root
        await self.directory.synced.wait()
        offer = next(iter(self.directory.candidates(root, exclude)), None)
        if offer is None:
            raise SourceOffline(f"every source of root {root!r} is offline")
        used.append(offer)
        infos = [(ds.info, indices) for ds, indices in wanted]
        key = (root, offer.pub_id)
        try:
            async for n, i, digest, data in Source(self.client, offer.url).chunks(root, infos):
                self.fetched[key] += 1
                self.fetched_bytes[key] += len(data)
                yield wanted[n][0], i, digest, data
        except SourceOffline:
            self.directory.answered(offer, False)
            raise
        self.directory.answered(offer, True)

    async def chunks(self, dataset: Dataset, indices: list[int]) -> dict[int, bytes]:
        return (await self.chunks_many([(dataset, indices)]))[0]

    async def chunks_many(self, wanted: Wanted) -> list[dict[int, bytes]]:
        """Chunks of one version of a root's datasets, through the cache. A chunk that does
        not match its digest: if that version is gone, DatasetChanged; if not, the source sent
        other bytes (a mirror: not read from for a while) and the read is tried again."""
        exclude: frozenset[str] = frozenset()
        root = wanted[0][0].root
        for attempt in range(3):
            used: list[Offer] = []  # the sources this attempt's fetches read from
            try:
                return await self.cache.get_many(
                    wanted, partial(self.fetch, exclude=exclude, used=used)
                )
            except SourceOffline as exc:  # that source does not answer: the next one, if any
                offer = used[-1] if used else None
                if offer is None:
                    raise
                exclude = exclude | {offer.pub_id}
                if not self.directory.candidates(root, exclude):
                    raise SourceOffline(
                        f"every source of root {root!r} is offline ({exc})", root=root
                    ) from exc
            except DigestMismatch as exc:
                offer = used[-1] if used else None
                self.digest_failures[(root, offer.pub_id if offer else "")] += 1
                if attempt == 2:
                    raise
                await self.follower.resync(root)
                for ds, indices in wanted:
                    now = self.follower.datasets[root].get(ds.path)
                    if (
                        now is None
                        or now.id != ds.id
                        or not ds.info.same_layout(now.info)
                        or any(now.info.digests[i] != ds.info.digests[i] for i in indices)
                    ):
                        raise DatasetChanged(
                            f"{root}/{ds.path} changed while it was read: read it again",
                            path=ds.path,
                        ) from exc
                # an origin races its own files (a rewrite between scan and read): ask again;
                # a mirror serves only verified chunks of the version it announces
                if offer is not None and not offer.is_origin:
                    log.warning(
                        "source %s (%s) sent chunks of %s that fail their digests; not "
                        "reading from it for %d s",
                        offer.pub_id,
                        offer.url,
                        root,
                        DISTRUST_SECONDS,
                    )
                    self.directory.distrust(offer, DISTRUST_SECONDS)
                    exclude = exclude | {offer.pub_id}
        return await self.cache.get_many(wanted, partial(self.fetch, exclude=exclude, used=[]))
