"""The chunk cache: fetch only what is missing, verify it, keep it within a byte budget.

Each cached chunk is one file, ``chunks/<dataset id>/<index>``, holding the compressed bytes
exactly as the source stores them; the SQLite index (caterva.state) says which are present.
A chunk file is written under a temporary name and renamed, and recorded in the index only
after that, so a kill at any point leaves either a whole chunk or none; ``reconcile`` removes
what a kill left behind. Presence is decided by the index alone, never by reading the data.

The cache is given a fetcher, not a transport: ``fetch(dataset, indices)`` yields
``(index, digest, bytes)``. Concurrent readers of a missing chunk share one request.
Chunks arriving from a fetch are verified and written a group at a time (about GROUP_BYTES, in
one worker-thread hop) and indexed in one transaction: per-chunk hops and commits cost more
than small chunks themselves.
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

BATCH_BYTES = 4 << 20  # aim for batch requests of about this many compressed bytes
MAX_BATCH = 256  # chunks in one batch request
CONCURRENCY = 4  # batch requests in flight per read
GROUP_BYTES = 1 << 20  # fetched chunks verified and written per worker-thread hop
INLINE_BYTES = 256 << 10  # cached chunks read in the event loop itself, when no more than this


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
            present = self.state.present(dataset.id, indices)
            current = dataset.info.digests
            local = [i for i in indices if i in present and present[i][0] == current[i]]
            if sum(present[i][1] for i in local) <= INLINE_BYTES:  # not worth a thread hop
                out = self._read_files(dataset.id, local)
            else:
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
        stores: list[asyncio.Future] = []  # groups being verified and written, in threads
        try:
            async with limit:
                group: list[tuple[int, str, bytes]] = []
                size = 0
                async for i, digest, data in fetch(dataset, batch):
                    if i not in pending:
                        raise ProtocolError(f"source sent chunk {i} of {dataset.path}, not asked for")
                    group.append((i, digest, data))
                    size += len(data)
                    if size >= GROUP_BYTES:
                        # keep receiving while this group is hashed and written; at most two
                        # groups wait, so memory stays bounded when the disk is slower
                        stores.append(self._spawn_store(dataset, group, pending))
                        group, size = [], 0
                        if len(stores) > 1:
                            await stores[-2]
                stores.append(self._spawn_store(dataset, group, pending))
                for store in stores:
                    await store
            if pending:
                raise ProtocolError(f"source did not send chunks {sorted(pending)} of {dataset.path}")
        except BaseException as exc:
            # stores are never cancelled (a write cut short would leak its reservation): wait
            await asyncio.gather(*stores, return_exceptions=True)
            for i in pending:
                self._resolve(dataset.id, i, exc=exc)
            raise

    def _spawn_store(self, dataset: Dataset, group, pending: set[int]) -> asyncio.Task:
        task = asyncio.ensure_future(self._store_group(dataset, group, pending))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # reported by the batch
        return task

    async def _store_group(
        self, dataset: Dataset, group: list[tuple[int, str, bytes]], pending: set[int]
    ) -> None:
        """Verify, cache (what fits) and hand out ``group``; a bad chunk raises after the good
        ones before it are stored."""
        if not group:
            return
        keep = []  # room is made (and reserved in self.used) before the files are written
        for i, _, data in group:
            self.stats["fetched_bytes"] += len(data)
            if self._make_room(len(data)):
                keep.append(i)
                self.used += len(data)
            else:
                self.stats["passed_through"] += 1
        expected = dataset.info.digests  # read now: a change may have replaced info
        sizes = {i: len(data) for i, _, data in group}
        try:
            good, error = await asyncio.to_thread(
                _verify_and_write, self.dir / str(dataset.id), group, expected, set(keep)
            )
        except BaseException:  # e.g. a full disk: nothing of this group is indexed
            self.used -= sum(sizes[i] for i in keep)
            raise
        written = [i for i, _, _ in group[:good] if i in keep]
        self.used -= sum(sizes[i] for i in keep) - sum(sizes[i] for i in written)
        now = self.clock()
        self.state.add_chunks(dataset.id, [(i, expected[i], sizes[i], now) for i in written])
        for i, _, data in group[:good]:
            pending.discard(i)
            self._resolve(dataset.id, i, data)
        if error is not None:
            raise DigestMismatch(
                f"chunk {error} of {dataset.root}/{dataset.path} does not match its digest",
                index=error,
            )

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


def _verify_and_write(
    folder: Path, group: list[tuple[int, str, bytes]], expected: list[str], keep: set[int]
) -> tuple[int, int | None]:
    """Check each chunk against the digest sent and the one expected, writing those in
    ``keep``; stops at the first bad one. Returns (chunks that passed, index of the bad one)."""
    for n, (i, digest, data) in enumerate(group):
        actual = chunk_digest(data)
        if actual != digest or actual != expected[i]:
            return n, i
        if i in keep:
            _write_atomically(folder, str(i), data)
    return len(group), None


def _write_atomically(folder: Path, name: str, data: bytes) -> None:
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    try:
        f = open(tmp, "wb")
    except FileNotFoundError:  # the dataset's first chunk
        folder.mkdir(exist_ok=True)
        f = open(tmp, "wb")
    with f:
        f.write(data)
    os.replace(tmp, folder / name)
