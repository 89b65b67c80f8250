"""The chunk cache against a one-line fake fetcher: fetch-once, single flight, verification,
the byte budget, pinning, and recovery from a crash."""

from __future__ import annotations

import asyncio
import os

import pytest

from caterva.errors import ChunkOutOfRange, DigestMismatch
from caterva.protocol.metadata import DatasetInfo, chunk_digest
from caterva.subscriber.cache import Cache
from caterva.subscriber.state import Dataset, State

CHUNK = 1000


def make_info(
    path: str, nchunks: int, seed: int = 0, chunk: int = CHUNK
) -> tuple[DatasetInfo, list[bytes]]:
    """A plain file of ``nchunks`` chunks of ``chunk`` bytes, each one byte repeated."""
    chunks = [bytes([(seed + i) % 256]) * chunk for i in range(nchunks)]
    info = DatasetInfo(
        path=path,
        kind="file",
        shape=[nchunks * chunk],
        dtype="|u1",
        chunks=[chunk],
        blocks=[chunk],
        nchunks=nchunks,
        chunksize=chunk,
        nbytes=nchunks * chunk,
        cbytes=nchunks * chunk,
        cparams={},
        vlmeta={},
        digests=[chunk_digest(c) for c in chunks],
    )
    return info, chunks


class FakeSource:
    def __init__(self) -> None:
        self.data: dict[str, list[bytes]] = {}
        self.requests: list[list[int]] = []  # indices asked, per dataset
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self, wanted):
        self.requests += [list(indices) for _, indices in wanted]
        self.calls += 1
        if self.gate:
            await self.gate.wait()
        for dataset, indices in wanted:
            for i in indices:
                data = self.data[dataset.path][i]
                yield dataset, i, chunk_digest(data), data


@pytest.fixture
def env(tmp_path):
    state = State(tmp_path / "state.db")
    clock = iter(range(1, 10**9))
    cache = Cache(state, tmp_path / "chunks", budget=10 * CHUNK, clock=lambda: next(clock))
    source = FakeSource()

    def add(path, nchunks, seed=0):
        info, chunks = make_info(path, nchunks, seed)
        source.data[path] = chunks
        state.follow("r", 0)
        ds_id = state.put_datasets("r", [info])[info.path]
        return next(d for d in state.datasets("r") if d.id == ds_id)

    return cache, source, add


def run(coro):
    return asyncio.run(coro)


def test_fetches_only_missing_and_then_hits(env):
    cache, source, add = env
    ds = add("a", 8)
    got = run(cache.get(ds, [0, 1, 2], source))
    assert got == {i: source.data["a"][i] for i in (0, 1, 2)}
    got = run(cache.get(ds, [1, 2, 3], source))
    assert got[3] == source.data["a"][3]
    assert source.requests == [[0, 1, 2], [3]]
    assert cache.stats["hits"] == 2 and cache.stats["misses"] == 4


def test_concurrent_readers_share_one_request(env):
    cache, source, add = env
    ds = add("a", 4)

    async def both():
        source.gate = asyncio.Event()
        first = asyncio.create_task(cache.get(ds, [0, 1], source))
        second = asyncio.create_task(cache.get(ds, [1, 2], source))
        await asyncio.sleep(0)  # let both register before the source answers
        source.gate.set()
        return await first, await second

    first, second = run(both())
    assert first[1] == second[1] == source.data["a"][1]
    assert sorted(map(sorted, source.requests)) == [[0, 1], [2]]


def test_a_chunk_that_fails_its_digest_is_not_stored(env):
    cache, source, add = env
    ds = add("a", 2)
    source.data["a"][1] = b"tampered" * 10
    with pytest.raises(DigestMismatch):
        run(cache.get(ds, [0, 1], source))
    assert set(cache.state.present(ds.id)) == {0}
    with pytest.raises(ChunkOutOfRange):
        run(cache.get(ds, [2], source))


@pytest.mark.parametrize("group", [2 * CHUNK, 4 << 20])
def test_good_chunks_before_a_bad_one_are_stored_in_any_group(env, monkeypatch, group):
    """Fetched chunks are verified and written a group at a time (STORE_BYTES): the good ones
    before a bad one are kept, in earlier groups or in its own, and the bad one is not."""
    monkeypatch.setattr("caterva.subscriber.cache.STORE_BYTES", group)
    cache, source, add = env
    ds = add("a", 7)
    source.data["a"][5] = b"tampered" * 10
    with pytest.raises(DigestMismatch):
        run(cache.get(ds, list(range(7)), source))
    present = set(cache.state.present(ds.id))
    assert {0, 1, 2, 3, 4} <= present and 5 not in present
    files = sorted(p.name for p in (cache.dir / str(ds.id)).iterdir())
    assert files == sorted(f"{i}.{ds.info.digests[i]}" for i in present)


def test_budget_holds_under_three_times_its_size_and_evicts_lru(env):
    cache, source, add = env
    datasets = [add(f"d{k}", 10, seed=k) for k in range(3)]
    for ds in datasets:
        for i in range(10):
            assert run(cache.get(ds, [i], source))[i] == source.data[ds.path][i]
            assert cache.used == cache.state.used_bytes() <= cache.budget
    # the newest dataset survived whole; the older ones were evicted
    assert set(cache.state.present(datasets[2].id)) == set(range(10))
    assert cache.state.present(datasets[0].id) == {}
    assert cache.stats["evicted"] == 20


def test_a_chunk_read_again_outlives_older_reads_and_a_restart(env, tmp_path):
    """Uses are held in memory and written at eviction and at close (flush_uses), not one
    transaction per read: eviction still goes by the true order of use."""
    cache, source, add = env
    a, b = add("a", 10), add("b", 2, seed=50)
    for i in range(10):  # fills the budget, chunk 0 first
        run(cache.get(a, [i], source))
    run(cache.get(a, [0], source))  # a hit: chunk 0 is now the most recently used
    run(cache.get(b, [0], source))
    assert set(cache.state.present(a.id)) == {0, *range(2, 10)}  # chunk 1 went, not 0

    run(cache.get(a, [2], source))
    cache.flush_uses()  # the subscriber does this as it stops
    again = Cache(cache.state, tmp_path / "chunks", budget=cache.budget, clock=cache.clock)
    run(again.get(b, [1], source))
    assert set(again.state.present(a.id)) == {0, 2, *range(4, 10)}  # chunk 3 went, not 2


def test_pinned_chunks_are_not_evicted_and_overflow_passes_through(env):
    cache, source, add = env
    a, b = add("a", 6), add("b", 6, seed=50)
    run(cache.get(a, list(range(6)), source))
    with cache.pinned([(a, list(range(6)))]):
        got = run(cache.get(b, list(range(6)), source))
    assert got == dict(enumerate(source.data["b"]))
    assert set(cache.state.present(a.id)) == set(range(6))  # untouched under its reader
    assert cache.used <= cache.budget
    assert cache.stats["passed_through"] == 2
    assert not cache._pins


def test_one_read_larger_than_the_budget_keeps_its_own_chunks(env):
    cache, source, add = env
    big = add("big", 25)
    got = run(cache.get(big, list(range(25)), source))
    assert got == dict(enumerate(source.data["big"]))
    # the read pinned its chunks: the first ten stayed, the rest went to the reader uncached
    assert set(cache.state.present(big.id)) == set(range(10))
    assert cache.stats["passed_through"] == 15 and cache.stats["evicted"] == 0


def test_reconcile_after_a_crash(env, tmp_path):
    cache, source, add = env
    ds = add("a", 4)
    run(cache.get(ds, [0, 1, 2], source))
    folder = tmp_path / "chunks" / str(ds.id)
    name = {i: f"{i}.{ds.info.digests[i]}" for i in range(4)}
    (folder / name[1]).unlink()  # indexed but gone
    (folder / name[3]).write_bytes(b"half")  # written but never indexed
    (folder / f".{name[2]}.123.tmp").write_bytes(b"partial")
    (folder / "2").write_bytes(b"a chunk file of an older cache layout")
    cache.reconcile()
    assert set(cache.state.present(ds.id)) == {0, 2}
    assert sorted(p.name for p in folder.iterdir()) == [name[0], name[2]]
    assert cache.used == 2 * CHUNK
    source.requests.clear()
    run(cache.get(ds, [0, 1, 2, 3], source))
    assert source.requests == [[1, 3]]


def test_changed_digest_is_a_miss(env):
    cache, source, add = env
    ds = add("a", 3)
    run(cache.get(ds, [0, 1, 2], source))
    info, chunks = make_info("a", 3, seed=7)
    source.data["a"] = chunks
    ds = Dataset.of(ds.id, ds.root, info)  # what a change does (with a drop of changed chunks)
    source.requests.clear()
    assert run(cache.get(ds, [0, 1, 2], source)) == dict(enumerate(chunks))
    assert source.requests == [[0, 1, 2]]


def test_missing_chunks_of_many_datasets_are_one_fetch(env):
    cache, source, add = env
    a, b, c = add("a", 3), add("b", 2, seed=7), add("c", 2, seed=9)
    run(cache.get(b, [0], source))
    got = run(cache.get_many([(a, [0, 2]), (b, [0, 1]), (c, [1])], source))
    assert got == [
        {0: source.data["a"][0], 2: source.data["a"][2]},
        {0: source.data["b"][0], 1: source.data["b"][1]},
        {1: source.data["c"][1]},
    ]
    assert source.calls == 2  # b[0] first, then everything missing at once
    assert source.requests == [[0], [0, 2], [1], [1]]
    assert cache.stats["hits"] == 1


def test_batches_cut_by_bytes_and_count_share_small_datasets(env, monkeypatch):
    cache, source, add = env
    monkeypatch.setattr("caterva.subscriber.cache.FETCH_BYTES", 3 * CHUNK)
    small = [add(f"s{n}", 1, seed=n) for n in range(4)]
    big = add("big", 5, seed=5)
    run(cache.get_many([(ds, [0]) for ds in small] + [(big, [0, 1, 2, 3, 4])], source))
    # three chunks' worth per request, small datasets together, the big one cut
    assert source.calls == 3
    assert source.requests == [[0], [0], [0], [0], [0, 1], [2, 3, 4]]


def test_open_all_gives_every_chunk_as_its_file_or_none_at_all(env):
    """A batch sent from the chunk files (subscriber/source.py) needs every chunk held at its
    version: else None, and nothing is left open."""
    cache, source, add = env
    a, b = add("a", 4), add("b", 2, seed=9)
    run(cache.get_many([(a, [0, 1, 2]), (b, [1])], source))
    hits = cache.stats["hits"]
    opened = cache.open_all([(a, [2, 0]), (b, [1])])
    assert [(d.path, i, f.read()) for d, i, f in opened] == [
        ("a", 2, source.data["a"][2]),
        ("a", 0, source.data["a"][0]),
        ("b", 1, source.data["b"][1]),
    ]
    assert cache.stats["hits"] == hits + 3
    for *_, file in opened:
        file.close()
    descriptors = len(os.listdir("/proc/self/fd"))
    assert cache.open_all([(a, [0, 3])]) is None  # 3 not held
    (cache.dir / str(a.id) / f"1.{a.info.digests[1]}").unlink()  # gone behind the index
    assert cache.open_all([(a, [0, 1])]) is None
    assert len(os.listdir("/proc/self/fd")) == descriptors
    assert cache.stats["hits"] == hits + 3
