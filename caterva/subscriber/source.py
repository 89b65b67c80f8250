"""The subscriber's side of the source API (caterva.service.source_api) for the roots it
follows: to a LAN as a mirror, and to its own clients for raw chunks and whole files. Every
answer is of one version of a dataset: the Dataset a request starts with (read.py).

A subscriber keeps no manifest history: ``since`` gets the full manifest (as the contract
allows), gzipped once per version when asked.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
from collections.abc import AsyncIterator

from fastapi import Response

from caterva.protocol import rest
from caterva.service.manifests import compress
from caterva.service.source_api import Group
from caterva.service.spansend import Part, Plan, SpanResponse
from caterva.subscriber.cache import Cache, Wanted
from caterva.subscriber.files import file_response
from caterva.subscriber.follower import Follower
from caterva.subscriber.read import ReadPath
from caterva.subscriber.state import Dataset

WINDOW_BYTES = 8 << 20  # a batch stream holds about this many compressed bytes, and as many ahead
AHEAD = 16  # windows being read ahead at most (each is one source request when cold)
SPAN_FILES = 64  # cached chunk files a batch answer holds open at most; a bigger one streams


class FollowedSource:
    def __init__(self, follower: Follower, read: ReadPath, cache: Cache) -> None:
        self.follower, self.read, self.cache = follower, read, cache
        self._gzipped: dict[str, tuple[str, bytes]] = {}  # root -> (etag, gzipped manifest)

    def etag(self, root: str) -> str:
        return self.follower.manifest_body(root)[0]

    async def manifest(self, root: str, since: str | None, gzip: bool) -> tuple[str, bytes]:
        etag, body = self.follower.manifest_body(root)
        if not gzip:
            return etag, body
        for gone in self._gzipped.keys() - self.follower.etags.keys():
            del self._gzipped[gone]  # unfollowed
        if self._gzipped.get(root, ("",))[0] != etag:
            self._gzipped[root] = (etag, await asyncio.to_thread(compress, [body]))
        return self._gzipped[root]

    def dataset(self, root: str, path: str) -> Dataset:
        return self.follower.dataset(root, path)

    async def info(self, dataset: Dataset) -> bytes:
        chunks, nbytes = self.cache.state.cached(dataset.id)
        cached = {"cached": {"chunks": chunks, "bytes": nbytes}}
        return json.dumps({**dataset.info.to_dict(), **cached}, separators=(",", ":")).encode()

    async def chunk(self, dataset: Dataset, index: int) -> bytes:
        return (await self.read.chunks(dataset, [index]))[index]

    async def file(self, dataset: Dataset) -> Response:
        return await file_response(self.read, self.cache, dataset)

    async def batch(self, wanted: Wanted) -> Response | None:
        """A batch the cache holds whole (of at most SPAN_FILES chunks) is sent from the chunk
        files (caterva.service.spansend): its head goes before any byte is read, and the kernel
        copies the chunks to the socket instead of Python reading and writing them (a quarter
        of the CPU of a warm 8-chunk selection here). None otherwise: streamed by ``chunks``."""
        if sum(len(indices) for _, indices in wanted) > SPAN_FILES:
            return None
        opened = self.cache.open_all(wanted)
        if opened is None:
            return None
        plan = Plan([], [file for _, _, file in opened])
        try:
            for dataset, i, file in opened:
                size = os.fstat(file.fileno()).st_size
                head = rest.FRAME.pack(i, size, bytes.fromhex(dataset.info.digests[i]))
                plan.parts.append(Part(head, file, 0, size, dataset))
        except BaseException:
            plan.close()
            raise
        return SpanResponse(plan, _unchanged)

    async def chunks(self, wanted: Wanted) -> AsyncIterator[Group]:
        """Read (or fetched from the source) in windows of about WINDOW_BYTES, with as many
        bytes being read ahead while a window is sent. Small datasets share a window: one cache
        lookup, and one source request when cold. The first window is read before this
        returns: what fails then is the answer's status."""
        windows = rest.pieces(wanted, WINDOW_BYTES)
        first = _start(self.read.chunks_many(windows[0][0]))
        await first
        return self._windows(windows, first)

    async def _windows(self, windows: list, first: asyncio.Task) -> AsyncIterator[Group]:
        ahead = collections.deque([first])
        planned, ahead_bytes = 1, windows[0][1]
        try:
            for parts, size in windows:
                # keep about WINDOW_BYTES being read beyond the window being sent
                while (
                    planned < len(windows)
                    and ahead_bytes - size < WINDOW_BYTES
                    and len(ahead) < AHEAD
                ):
                    nxt = windows[planned]
                    ahead.append(_start(self.read.chunks_many(nxt[0])))
                    planned, ahead_bytes = planned + 1, ahead_bytes + nxt[1]
                got = await ahead.popleft()
                ahead_bytes -= size
                yield [
                    (n, chunks.pop(n), ds.info.digests[n])
                    for (ds, part), chunks in zip(parts, got)
                    for n in part
                ]
        finally:
            for task in ahead:
                task.cancel()


def _unchanged(part: Part) -> bool:
    """A cached chunk file is never written in place: named by its digest, made by a rename."""
    return False


def _start(coro) -> asyncio.Task:
    """A task whose failure is not reported as never retrieved when it is cancelled unread."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task
