"""The chunk cache: fetch only what is missing, verify it, keep it within a byte budget.

Each cached chunk is one file, ``chunks/<dataset id>/<index>``, holding the compressed bytes
exactly as the source stores them; the SQLite index (caterva.state) says which are present.
A chunk file is written under a temporary name and renamed, and recorded in the index only
after that, so a kill at any point leaves either a whole chunk or none; ``reconcile`` removes
what a kill left behind. Presence is decided by the index alone, never by reading the data.

The cache is given a fetcher, not a transport: ``fetch(dataset, indices)`` yields
``(index, digest, bytes)``. Concurrent readers of a missing chunk share one request.
Eviction is least-recently-used by bytes and never takes a chunk a reader is using (readers
pin the chunks they asked for); a chunk that cannot fit without evicting under a reader is
passed through to its reader uncached, so the budget holds whatever the workload.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from caterva.errors import ChunkOutOfRange, DigestMismatch, ProtocolError
from caterva.protocol.metadata import chunk_digest
from caterva.state import Dataset, State

BATCH_BYTES = 16 << 20  # aim for batch requests of about this many compressed bytes
MAX_BATCH = 256  # chunks in one batch request
CONCURRENCY = 4  # batch requests in flight per read


class Fetcher(Protocol):
    def __call__(self, dataset: Dataset, indices: list[int]) -> AsyncIterator[tuple[int, str, bytes]]: ...


class Cache:
    def __init__(self, state: State, directory: Path, budget: int, clock: Callable[[], float] = time.time):
        self.state = state
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.budget = budget
        self.clock = clock
        self.used = state.used_bytes()
        self.stats = Counter[str]()  # hits, misses, fetched_bytes, evicted, passed_through
        self._inflight: dict[tuple[int, int], asyncio.Future[bytes]] = {}
        self._pins = Counter[tuple[int, int]]()  # (dataset id, index) -> readers using it

    # --- reading -----------------------------------------------------------------------------

    async def get(self, dataset: Dataset, indices: list[int], fetch: Fetcher) -> dict[int, bytes]:
        """The compressed bytes of ``indices``, fetching the missing ones (concurrently)."""
        for i in indices:
            if not 0 <= i < dataset.info.nchunks:
                raise ChunkOutOfRange(
                    f"chunk {i} out of range: {dataset.path} has {dataset.info.nchunks} chunks"
                )
        with self.pinned(dataset, indices):
            present = self.state.present(dataset.id)
            current = dataset.info.digests
            local = [i for i in indices if i in present and present[i][0] == current[i]]
            out = await asyncio.to_thread(self._read_files, dataset.id, local)
            missing = [i for i in indices if i not in out]  # includes files gone since the query
            self.stats["hits"] += len(out)
            if out:
                self.state.touch(dataset.id, out, self.clock())
            if missing:
                out.update(await self._fetch(dataset, missing, fetch))
        return out

    async def iter_ordered(
        self, dataset: Dataset, indices: list[int], fetch: Fetcher, window: int = 32
    ) -> AsyncIterator[tuple[int, bytes]]:
        """Chunks in the order asked, ``window`` at a time, so memory stays bounded."""
        for start in range(0, len(indices), window):
            part = indices[start : start + window]
            got = await self.get(dataset, part, fetch)
            for i in part:
                yield i, got.pop(i)

    def _read_files(self, dataset: int, indices: list[int]) -> dict[int, bytes]:
        out = {}
        for i in indices:
            try:
                out[i] = (self.dir / str(dataset) / str(i)).read_bytes()
            except FileNotFoundError:
                pass
        return out

    async def _fetch(self, dataset: Dataset, missing: list[int], fetch: Fetcher) -> dict[int, bytes]:
        waits: dict[int, asyncio.Future[bytes]] = {}
        mine: list[int] = []
        loop = asyncio.get_running_loop()
        for i in missing:
            key = (dataset.id, i)
            if key not in self._inflight:
                self._inflight[key] = loop.create_future()
                mine.append(i)
            waits[i] = self._inflight[key]
        self.stats["misses"] += len(mine)
        if mine:
            limit = asyncio.Semaphore(CONCURRENCY)
            tasks = [
                asyncio.create_task(self._fetch_batch(dataset, batch, fetch, limit))
                for batch in self._batches(dataset, mine)
            ]
            await asyncio.gather(*tasks, return_exceptions=True)  # errors reach the futures
        return {i: await future for i, future in waits.items()}

    def _batches(self, dataset: Dataset, indices: list[int]) -> list[list[int]]:
        per_chunk = max(1, dataset.info.cbytes // max(1, dataset.info.nchunks))
        size = max(1, min(MAX_BATCH, BATCH_BYTES // per_chunk))
        return [indices[i : i + size] for i in range(0, len(indices), size)]

    async def _fetch_batch(
        self, dataset: Dataset, batch: list[int], fetch: Fetcher, limit: asyncio.Semaphore
    ) -> None:
        pending = set(batch)
        try:
            async with limit:
                async for i, digest, data in fetch(dataset, batch):
                    if i not in pending:
                        raise ProtocolError(f"source sent chunk {i} of {dataset.path}, not asked for")
                    expected = dataset.info.digests[i]  # read now: a change may have replaced info
                    actual = await asyncio.to_thread(chunk_digest, data)
                    if actual != digest or actual != expected:
                        raise DigestMismatch(
                            f"chunk {i} of {dataset.root}/{dataset.path} does not match its digest",
                            index=i,
                        )
                    await self._store(dataset, i, digest, data)
                    pending.discard(i)
                    self._resolve(dataset.id, i, data)
            if pending:
                raise ProtocolError(f"source did not send chunks {sorted(pending)} of {dataset.path}")
        except BaseException as exc:
            for i in pending:
                self._resolve(dataset.id, i, exc=exc)
            raise

    def _resolve(self, dataset: int, i: int, data: bytes | None = None, exc: BaseException | None = None):
        future = self._inflight.pop((dataset, i), None)
        if future is None or future.done():
            return
        if exc is not None:
            future.set_exception(exc)
            future.exception()  # a failure nobody awaits must not be logged as unretrieved
        else:
            future.set_result(data)

    # --- storing and evicting ----------------------------------------------------------------

    async def _store(self, dataset: Dataset, i: int, digest: str, data: bytes) -> None:
        self.stats["fetched_bytes"] += len(data)
        size = len(data)
        if not self._make_room(size):
            self.stats["passed_through"] += 1
            return
        folder = self.dir / str(dataset.id)
        await asyncio.to_thread(_write_atomically, folder, str(i), data)
        self.state.add_chunk(dataset.id, i, digest, size, self.clock())
        self.used += size

    def _make_room(self, size: int) -> bool:
        if size > self.budget:
            return False
        while self.used + size > self.budget:
            victims = [
                v for v in self.state.oldest(limit=256 + len(self._pins)) if v[:2] not in self._pins
            ]
            if not victims:
                return False
            for dataset, idx, victim_size in victims:
                self._remove(dataset, [idx], victim_size)
                self.stats["evicted"] += 1
                if self.used + size <= self.budget:
                    break
        return True

    def _remove(self, dataset: int, indices: list[int], size: int) -> None:
        self.state.drop_chunks(dataset, indices)
        for i in indices:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.dir / str(dataset) / str(i))
        self.used -= size

    def drop(self, dataset: Dataset | int, indices: list[int] | None = None) -> None:
        """Forget chunks of a dataset (all of them when ``indices`` is None)."""
        ds_id = dataset if isinstance(dataset, int) else dataset.id
        present = self.state.present(ds_id)
        chosen = list(present) if indices is None else [i for i in indices if i in present]
        self._remove(ds_id, chosen, sum(present[i][1] for i in chosen))
        if indices is None:
            shutil.rmtree(self.dir / str(ds_id), ignore_errors=True)

    @contextlib.contextmanager
    def pinned(self, dataset: Dataset, indices: list[int]):
        """While pinned, these chunks are not evicted (a reader is using them)."""
        keys = [(dataset.id, i) for i in indices]
        self._pins.update(keys)
        try:
            yield
        finally:
            self._pins.subtract(keys)
            self._pins = +self._pins  # forget keys nobody pins any more

    def reconcile(self) -> None:
        """After a crash: drop index rows without files, files without rows, temp files."""
        indexed = self.state.all_chunks()
        known = self.state.dataset_ids()
        on_disk: set[tuple[int, int]] = set()
        for folder in self.dir.iterdir():
            if not folder.name.isdigit() or int(folder.name) not in known:
                shutil.rmtree(folder, ignore_errors=True) if folder.is_dir() else folder.unlink()
                continue
            for f in folder.iterdir():
                key = (int(folder.name), int(f.name)) if f.name.isdigit() else None
                if key in indexed:
                    on_disk.add(key)
                else:
                    f.unlink()
        for dataset, idx in indexed - on_disk:
            self.state.drop_chunks(dataset, [idx])
        self.used = self.state.used_bytes()


def _write_atomically(folder: Path, name: str, data: bytes) -> None:
    folder.mkdir(exist_ok=True)
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, folder / name)
