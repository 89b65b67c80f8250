"""The publisher's side of the source API (caterva.service.source_api): its one root, from the
catalog. Blocking work (blosc2, disk, encoding a large manifest) runs in a worker thread; a
batch reads a group of about GROUP_BYTES per thread hop (one hop per chunk costs more than
reading a small chunk), as the client consumes the stream; or, where the chunks are plain
ranges of Blosc2 files (spans.py), not read at all: sent with sendfile.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator

import anyio
from fastapi import Response

from caterva.errors import CatervaError, Unavailable, UnknownDataset, UnknownRoot
from caterva.protocol import rest
from caterva.publisher import spans
from caterva.publisher.catalog import Catalog, Entry
from caterva.publisher.hdf5 import Member, file_response
from caterva.publisher.stats import Stats
from caterva.publisher.store import stamp_of
from caterva.service.ranges import RangeFileResponse
from caterva.service.source_api import Group
from caterva.service.spansend import SpanResponse

log = logging.getLogger("caterva.publisher")

GROUP_BYTES = 4 << 20  # compressed bytes of a batch read in one thread hop, and sent at once


class CatalogSource:
    def __init__(self, catalog: Catalog, stats: Stats) -> None:
        self.catalog, self.stats = catalog, stats

    def _root(self, root: str) -> None:
        if root != self.catalog.name:
            raise UnknownRoot(f"no root {root!r} is served here", root=root)

    def etag(self, root: str) -> str:
        self._root(root)
        return self.catalog.manifest.etag

    async def manifest(
        self, root: str, since: str | None, gzip: bool
    ) -> tuple[str, bytes | Iterator[bytes]]:
        self._root(root)
        return await anyio.to_thread.run_sync(self.catalog.manifest_body, since, gzip)

    def dataset(self, root: str, path: str) -> Entry:
        self._root(root)
        return self.catalog.get(path)

    async def info(self, dataset: Entry) -> bytes:
        return await anyio.to_thread.run_sync(dataset.info.to_bytes)

    async def chunk(self, dataset: Entry, index: int) -> bytes:
        data, _ = await anyio.to_thread.run_sync(dataset.read_chunk, index)
        self.stats.chunk(dataset.path, len(data), "chunk")
        return data

    async def chunks(self, wanted: list[tuple[Entry, list[int]]]) -> AsyncIterator[Group]:
        """Read lazily. A file that changes mid-batch ends the stream short: the reader sees
        chunks missing and asks again."""
        return self._groups(wanted)

    async def _groups(self, wanted: list[tuple[Entry, list[int]]]) -> AsyncIterator[Group]:
        for group, _ in rest.pieces(wanted, GROUP_BYTES):
            got, whole = await anyio.to_thread.run_sync(self._read, group)
            yield got
            if not whole:
                return

    def _read(self, group: list[tuple[Entry, list[int]]]) -> tuple[Group, bool]:
        """The chunks of ``group`` in order, and whether all of them could be read."""
        out = []
        for entry, indices in group:
            for n in indices:
                try:
                    data, digest = entry.read_chunk(n)
                except CatervaError as exc:
                    log.info("batch of %r cut at chunk %d: %s", entry.path, n, exc)
                    return out, False
                self.stats.chunk(entry.path, len(data))
                out.append((n, data, digest))
        return out, True

    async def batch(self, wanted: list[tuple[Entry, list[int]]]) -> Response | None:
        """Sent from file ranges (sendfile) when every chunk is simply one (spans.py)."""
        if any(isinstance(entry, Member) for entry, _ in wanted):
            return None
        plan = await anyio.to_thread.run_sync(spans.plan, wanted)
        if plan is None:
            return None
        for part in plan.parts:
            self.stats.chunk(part.entry.path, part.size)
        return SpanResponse(plan, spans.changed)

    async def file(self, dataset: Entry) -> Response:
        if isinstance(dataset, Member):  # a dataset inside an HDF5 file: made from its chunks
            return await file_response(dataset)
        try:
            st = await anyio.to_thread.run_sync(os.stat, dataset.source)
        except OSError:
            raise UnknownDataset(
                f"no dataset {dataset.path!r} in root {self.catalog.name!r}", path=dataset.path
            ) from None
        if stamp_of(st) != dataset.stamp:  # being written in place: not what was described
            raise Unavailable(f"{dataset.path!r} is being written; retry shortly")
        response = RangeFileResponse(
            dataset.source, stat_result=st, media_type="application/octet-stream"
        )
        response.unchanged = dataset.unchanged
        return response
