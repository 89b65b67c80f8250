"""The cache under concurrency: readers that go away, datasets that change or vanish while
their chunks are fetched. Deterministic: the fake source releases chunks when told to."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caterva.errors import DigestMismatch, Unavailable
from caterva.protocol.metadata import chunk_digest
from caterva.subscriber.cache import Cache
from caterva.subscriber.state import Dataset, State
from tests.unit.test_cache import CHUNK, FakeSource, make_info


@pytest.fixture
def env(tmp_path):
    state = State(tmp_path / "state.db")
    cache = Cache(state, tmp_path / "chunks", budget=10 * CHUNK)
    source = FakeSource()

    def add(path, nchunks, seed=0):
        info, chunks = make_info(path, nchunks, seed)
        source.data[path] = chunks
        state.follow("r", 0)
        return Dataset.of(state.put_datasets("r", [info])[info.path], "r", info)

    return cache, source, add


def consistent(cache: Cache) -> None:
    """What the cache counts is what the index holds, and the files are exactly the rows."""
    assert cache.used == cache.state.used_bytes()
    rows = {(d, i): digest for (d, i), digest in cache.state.all_chunks().items()}
    files = {(int(f.parent.name), f.name) for f in cache.dir.glob("*/*")}
    assert files == {(d, f"{i}.{digest}") for (d, i), digest in rows.items()}
    assert sum(f.stat().st_size for f in cache.dir.glob("*/*")) == cache.used


async def within(coro, seconds: float = 5.0):
    """A hang is a failure, not a stuck test run."""
    return await asyncio.wait_for(coro, seconds)


def test_a_reader_cancelled_before_its_fetch_starts_blocks_no_one(env):
    cache, source, add = env
    ds = add("a", 4)

    async def go():
        first = asyncio.create_task(cache.get(ds, [0, 1], source))
        await asyncio.sleep(0)  # it registered its fetch; the batch task has not run yet
        first.cancel()
        got = await within(cache.get(ds, [0, 1], source))
        assert got == {0: source.data["a"][0], 1: source.data["a"][1]}

    asyncio.run(go())
    consistent(cache)


def test_a_reader_cancelled_while_waiting_for_another_ones_fetch_harms_neither(env):
    cache, source, add = env
    ds = add("a", 4)
    source.gate = asyncio.Event()

    async def go():
        owner = asyncio.create_task(cache.get(ds, [0, 1], source))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(cache.get(ds, [0, 1], source))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        owner.cancel()  # the reader that started the fetch goes away too
        await asyncio.gather(owner, return_exceptions=True)
        source.gate.set()
        got = await within(cache.get(ds, [0, 1], source))
        assert got[1] == source.data["a"][1]
        assert source.calls == 1  # the fetch went on for whoever asks next

    asyncio.run(go())
    consistent(cache)


def test_a_fetch_cancelled_at_shutdown_fails_its_waiters_cleanly(env):
    cache, source, add = env
    ds = add("a", 2)
    source.gate = asyncio.Event()

    async def go():
        reader = asyncio.create_task(cache.get(ds, [0], source))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        for task in list(cache._tasks):
            task.cancel()
        with pytest.raises(Unavailable):
            await within(reader)

    asyncio.run(go())


def test_two_versions_of_a_chunk_never_share_a_fetch_or_a_file(env):
    cache, source, add = env
    old = add("a", 3)
    new_info, new_chunks = make_info("a", 3, seed=9)
    new = Dataset.of(old.id, old.root, new_info)
    old_chunks = list(source.data["a"])

    async def versioned(wanted):
        for ds, indices in wanted:
            for i in indices:
                data = (new_chunks if ds.info == new_info else old_chunks)[i]
                yield ds, i, chunk_digest(data), data

    async def go():
        a, b = await asyncio.gather(
            cache.get(old, [0, 1, 2], versioned), cache.get(new, [0, 1, 2], versioned)
        )
        assert a == dict(enumerate(old_chunks)) and b == dict(enumerate(new_chunks))

    asyncio.run(go())
    consistent(cache)


OPS = st.lists(
    st.sampled_from(["read", "read", "read", "change", "delete", "evict", "step"]),
    min_size=1,
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(ops=OPS, seed=st.integers(0, 2**16))
def test_accounting_equals_the_index_under_any_interleaving(tmp_path_factory, ops, seed):
    """Reads, changes, deletes and evictions interleaved at every await: afterwards the bytes
    counted are the bytes indexed, every indexed chunk has its file and nothing else is on
    disk, and the budget held."""
    tmp = tmp_path_factory.mktemp("races")
    state = State(tmp / "state.db")
    cache = Cache(state, tmp / "chunks", budget=6 * CHUNK)
    rng = random.Random(seed)
    versions: dict[str, list[bytes]] = {}
    current: dict[str, Dataset] = {}

    def create(path: str) -> None:
        info, chunks = make_info(path, 4, seed=rng.randrange(256))
        state.follow("r", 0)
        current[path] = Dataset.of(state.put_datasets("r", [info])[info.path], "r", info)
        versions[info.etag] = chunks

    async def fetch(wanted):
        for ds, indices in wanted:
            for i in indices:
                await asyncio.sleep(0)
                chunk = versions[ds.info.etag][i]
                if rng.random() < 0.05:
                    chunk = b"tampered"
                yield ds, i, chunk_digest(chunk), chunk

    async def read(ds: Dataset) -> None:
        indices = rng.sample(range(ds.info.nchunks), rng.randint(1, ds.info.nchunks))
        try:
            got = await cache.get(ds, indices, fetch)
        except DigestMismatch:
            return
        assert all(got[i] == versions[ds.info.etag][i] for i in indices)  # one version

    async def go():
        for path in ("a", "b"):
            create(path)
        tasks = []
        for op in ops:
            path = rng.choice(sorted(current))
            if op == "read":
                tasks.append(asyncio.create_task(read(current[path])))
            elif op == "change":
                ds = current[path]
                info, chunks = make_info(path, 4, seed=rng.randrange(256))
                versions[info.etag] = chunks
                cache.drop(ds, ds.info.changed_chunks(info))
                state.put_datasets("r", [info])[info.path]
                current[path] = Dataset.of(ds.id, "r", info)
            elif op == "delete":
                ds = current.pop(path)
                cache.drop(ds)
                state.delete_dataset(ds.id)
                create(path)
            elif op == "evict":
                cache._make_room(cache.budget)
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
            assert cache.used + cache.reserved <= cache.budget
        await within(asyncio.gather(*tasks, return_exceptions=True), 30)
        await within(asyncio.gather(*cache._tasks, return_exceptions=True), 30)

    asyncio.run(go())
    consistent(cache)
    state.close()
