"""Pinned roots against a real cache and state, with a fake source and a follower that holds
datasets only: eviction never takes a pinned root's chunks, a pin that cannot fit is refused,
a replica is made whole and kept whole from events alone, the pin survives a reopened state
(and an old one is migrated), and the background fetches keep to their rate."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from dataclasses import replace

import pytest

from caterva.errors import PinTooLarge, SourceOffline
from caterva.protocol.listing import Listing
from caterva.protocol.metadata import chunk_digest, info_json
from caterva.subscriber.cache import Cache
from caterva.subscriber.pins import Pace, Pins
from caterva.subscriber.state import State
from tests.unit.test_cache import CHUNK, FakeSource, make_info

BUDGET = 20 * CHUNK


class Follower:
    """What Pins asks of the follower: the datasets of followed roots, and follow."""

    def __init__(self, state: State, cache: Cache, source: FakeSource) -> None:
        self.state, self.cache, self.source = state, cache, source
        self.etags: dict[str, str | None] = {}
        self.datasets: dict = defaultdict(dict)
        self.remote: dict[str, list] = {}  # root -> infos its source serves

    def publish(self, root: str, path: str, nchunks: int, seed: int = 0, changed=()):
        """The source now serves this version of root/path (``changed``: chunks that differ
        from the seed's); a followed root moves to it, as the follower does, dropping the
        chunks that changed."""
        info, chunks = make_info(path, nchunks, seed)
        for i in changed:
            chunks[i] = b"changed" * (CHUNK // 7)
        info = replace(info, digests=[chunk_digest(c) for c in chunks], etag="")
        self.source.data[path] = chunks
        self.remote.setdefault(root, [])
        self.remote[root] = [i for i in self.remote[root] if i.path != path] + [info]
        if root in self.etags:
            self._record(root, [info])
        return info

    def _record(self, root, infos):
        for info in infos:
            if old := self.datasets[root].get(info.path):
                self.cache.drop(old, old.info.changed_chunks(info))
        ids = self.state.put_datasets(root, infos)
        for ds in self.state.datasets(root):
            if ds.id in ids.values():
                self.datasets[root][ds.path] = ds

    def followed(self, root):
        return self.datasets[root]

    async def follow(self, root, admit=None):
        if admit is not None:
            listed = {i.path: (i.etag, info_json(i)) for i in self.remote[root]}
            admit(Listing(root, "", None, listed))
        self.state.follow(root, 0)
        self.etags[root] = None
        self._record(root, self.remote[root])


class Read:
    def __init__(self, cache: Cache, source: FakeSource) -> None:
        self.cache, self.source = cache, source
        self.offline: Exception | None = None  # what every read raises, while set

    async def chunks_many(self, wanted):
        if self.offline is not None:
            raise self.offline
        return await self.cache.get_many(wanted, self.source)


@pytest.fixture
def env(tmp_path):
    state = State(tmp_path / "state.db")
    clock = iter(range(1, 10**9))
    cache = Cache(state, tmp_path / "chunks", budget=BUDGET, clock=lambda: next(clock))
    source = FakeSource()
    follower = Follower(state, cache, source)
    pins = Pins(state, cache, follower, Read(cache, source))
    return state, cache, follower, pins


async def settle(pins: Pins) -> None:
    """What the pinner's task does when woken, until nothing is left to compare (the task
    itself runs in the integration tests); retries are not awaited."""
    while pins._dirty:
        root = min(pins._dirty)
        await pins._replicate_quietly(root, pins._dirty.pop(root))
    await pins.stop()  # cancels the retry timers


def held(state: State, root: str) -> dict:
    return state.root_chunks(root)


def test_eviction_never_takes_a_pinned_roots_chunks(env):
    state, cache, follower, pins = env
    follower.publish("p", "p.bin", 10)
    follower.publish("o", "o.bin", 30, seed=100)

    async def go():
        await pins.pin("p")
        await settle(pins)  # p's 10 chunks held, and the oldest in the cache
        await follower.follow("o")
        for i in range(30):  # three times what is left of the budget: o evicts itself only
            await cache.get(follower.datasets["o"]["o.bin"], [i], follower.source)

    asyncio.run(go())
    assert len(held(state, "p")) == 10
    assert cache.stats["evicted"] == 20 and cache.used <= cache.budget
    assert pins.progress("p") == {
        "bytes": 10 * CHUNK,
        "total": 10 * CHUNK,
        "behind": 0,
        "problem": None,
    }


def test_unpinned_the_same_chunks_are_evicted_first(env):
    """The control of the test above: least recently used goes first, pinned or not."""
    state, cache, follower, pins = env
    follower.publish("p", "p.bin", 10)
    follower.publish("o", "o.bin", 30, seed=100)

    async def go():
        await pins.pin("p")
        await settle(pins)
        pins.unpin("p")
        await follower.follow("o")
        for i in range(30):
            await cache.get(follower.datasets["o"]["o.bin"], [i], follower.source)

    asyncio.run(go())
    assert held(state, "p") == {}


def test_a_pin_that_cannot_fit_is_refused_and_the_root_not_followed(env):
    state, cache, follower, pins = env
    follower.publish("a", "a.bin", 15)
    follower.publish("b", "b.bin", 10, seed=50)
    follower.publish("huge", "h.bin", 21, seed=70)

    async def go():
        with pytest.raises(
            PinTooLarge,
            match=r"cannot pin huge: it stores 20.5 KiB, more than the 19.5 KiB the cache budget",
        ):
            await pins.pin("huge")
        assert "huge" not in follower.etags  # refused before anything was recorded
        await pins.pin("a")
        with pytest.raises(PinTooLarge, match="beside the other pinned roots") as refused:
            await pins.pin("b")  # alone it fits; beside a it does not
        assert refused.value.detail == {"root": "b", "needed": 10 * CHUNK, "room": 5 * CHUNK}
        assert refused.value.status == 409 and refused.value.code == "pin_too_large"

    asyncio.run(go())
    assert pins.roots == {"a"} == state.pinned()


def test_a_replica_is_made_whole_and_kept_whole_from_events_alone(env):
    state, cache, follower, pins = env
    follower.publish("p", "x.bin", 6)
    follower.publish("p", "y.bin", 4, seed=9)

    async def go():
        await pins.pin("p")
        await settle(pins)
        assert pins.progress("p")["behind"] == 0
        follower.source.requests.clear()
        # the root moves on: chunks 1 and 3 of x change (the follower drops them, says so)
        follower.publish("p", "x.bin", 6, changed=[1, 3])
        assert pins.progress("p")["behind"] == 2
        pins.on_event({"root": "p", "event": "update", "path": "x.bin", "chunks": [1, 3]})
        await settle(pins)

    asyncio.run(go())
    assert follower.source.requests == [[1, 3]]  # the changed chunks only, without a read
    ds = follower.datasets["p"]["x.bin"]
    assert {i: d for (d_id, i), (d, _) in held(state, "p").items() if d_id == ds.id} == dict(
        enumerate(ds.info.digests)
    )
    assert pins.progress("p")["behind"] == 0


class SmallPieces(Pace):
    """Requests of 5 chunks, no waiting."""

    def __init__(self) -> None:
        super().__init__(0)

    def piece(self) -> int:
        return 5 * CHUNK


def test_a_root_that_outgrows_the_budget_says_so_keeps_what_fits_and_stops_fetching(env):
    state, cache, follower, pins = env
    pins.pace = SmallPieces()
    follower.publish("p", "x.bin", 18)

    async def go():
        await pins.pin("p")
        follower.publish("p", "x.bin", 40, seed=1)  # a new version, twice the budget
        await settle(pins)

    asyncio.run(go())
    progress = pins.progress("p")
    assert progress["behind"] == 20 and progress["bytes"] == BUDGET
    assert progress["problem"] == "20 chunks do not fit the cache budget"
    # the first request that could not be kept ends the pass: not 40 chunks fetched, 25
    assert sum(map(len, follower.source.requests)) == 25
    assert len(follower.source.requests) == 5


def test_the_pin_survives_a_reopened_state_and_an_old_state_is_migrated(tmp_path):
    state = State(tmp_path / "state.db")
    state.follow("p", 0)
    state.follow("q", 0)
    state.pin("p", True)
    state.close()
    assert State(tmp_path / "state.db").pinned() == {"p"}
    # a state of the version before pins, with a cached chunk: migrated, nothing pinned
    old = tmp_path / "old.db"
    State(old).close()
    db = sqlite3.connect(old)
    db.executescript(
        "DROP INDEX chunks_evictable; ALTER TABLE chunks DROP COLUMN pinned;"
        "ALTER TABLE roots DROP COLUMN pinned; CREATE INDEX chunks_by_atime ON chunks (atime);"
        "ALTER TABLE datasets DROP COLUMN etag;"  # came after pins (schema 4)
        "INSERT INTO roots VALUES ('r', NULL, 0, NULL);"
        "INSERT INTO datasets VALUES (1, 'r', 'a', '{\"etag\": \"e\"}');"
        "INSERT INTO chunks VALUES (1, 0, 'd0', 10, 1.0);"
        "PRAGMA user_version = 2;"
    )
    db.close()
    migrated = State(old)
    assert migrated.followed() == {"r": None} and migrated.pinned() == set()
    assert migrated.oldest(10) == [(1, 0, "d0", 10)]
    migrated.pin("r", True)  # its chunks with it, and those to come
    migrated.add_chunks([(1, 1, "d1", 10, 0.5)])
    assert migrated.pinned() == {"r"} and migrated.oldest(10) == []
    migrated.pin("r", False)
    assert migrated.oldest(10) == [(1, 1, "d1", 10), (1, 0, "d0", 10)]


def test_pace_keeps_the_average_rate_and_saves_no_idle_time():
    now = [0.0]
    slept = []

    async def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    pace = Pace(1000, clock=lambda: now[0], sleep=sleep)

    async def go():
        for _ in range(3):
            await pace.spent(500)
        now[0] += 100  # idle: no credit saved for a burst
        await pace.spent(2000)

    asyncio.run(go())
    assert slept == [0.5, 0.5, 0.5, 2.0]
    assert Pace(0).piece() == 8 << 20 and Pace(1000).piece() == 64 << 10
    assert Pace(1 << 20).piece() == 1 << 20


def test_an_event_compares_its_dataset_only_and_a_source_back_online_all(env):
    """A change event costs a look at its dataset, not at the whole (maybe huge) root; a
    source coming back online (or a retry) compares everything."""
    state, cache, follower, pins = env
    follower.publish("p", "x.bin", 3)
    follower.publish("p", "y.bin", 3, seed=9)

    async def go():
        await pins.pin("p")
        await settle(pins)
        cache.drop(follower.datasets["p"]["y.bin"], [2])  # as if lost, with no event
        follower.publish("p", "x.bin", 3, changed=[0])
        pins.on_event({"root": "p", "event": "update", "path": "x.bin", "chunks": [0]})
        pins.on_event({"root": "p", "event": "resync", "datasets": 2})  # adds nothing
        await settle(pins)
        assert pins.progress("p")["behind"] == 1  # y's chunk 2: not looked at
        pins.on_event({"root": "p", "event": "source", "online": False})
        assert not pins._dirty
        pins.on_event({"root": "p", "event": "source", "online": True, "url": "http://x"})
        await settle(pins)

    asyncio.run(go())
    assert pins.progress("p")["behind"] == 0
    assert follower.source.requests[-2:] == [[0], [2]]


def test_a_failed_pass_says_why_and_is_retried_until_whole(env):
    state, cache, follower, pins = env
    follower.publish("p", "x.bin", 4)
    follower.publish("p", "y.bin", 2, seed=9)
    pins.read.offline = SourceOffline("every source of root 'p' is offline")

    async def go():
        await pins.pin("p")
        await settle(pins)
        assert pins.progress("p")["problem"] == "every source of root 'p' is offline"
        assert "p" in pins._timers  # tried again later
        pins.read.offline = None
        # a change of x alone does not say the replica is whole: y is still missing
        follower.publish("p", "x.bin", 4, changed=[0])
        pins.on_event({"root": "p", "event": "update", "path": "x.bin", "chunks": [0]})
        await settle(pins)
        assert pins.progress("p")["problem"] is not None
        pins._touch("p")  # what the retry timer does when due
        await settle(pins)

    asyncio.run(go())
    progress = pins.progress("p")
    assert progress["behind"] == 0 and progress["problem"] is None
    assert progress["bytes"] == progress["total"] == 5 * CHUNK + len(b"changed" * (CHUNK // 7))


def test_progress_is_computed_again_only_when_the_state_changed(env):
    """/v1/roots asks for a pinned root's progress on every call: an unchanged replica is not
    scanned again (a big root's scan holds the event loop for 0.3-0.5 s)."""
    state, cache, follower, pins = env
    follower.publish("p", "x.bin", 6)
    scans = []
    scan = pins._scan
    pins._scan = lambda root, paths=None: scans.append(root) or scan(root, paths)

    async def go():
        await pins.pin("p")
        assert pins.progress("p")["behind"] == 6
        assert pins.progress("p")["behind"] == 6
        assert len(scans) == 1  # nothing changed in between
        await settle(pins)
        scans.clear()
        assert pins.progress("p")["behind"] == 0  # the chunks stored are seen
        assert pins.progress("p") == pins.progress("p") and len(scans) == 1
        ds = follower.datasets["p"]["x.bin"]
        state.drop_chunks(ds.id, [2])  # by this connection
        assert pins.progress("p")["behind"] == 1
        other = sqlite3.connect(state.path)  # by another one (the follower's bulk writes)
        with other:
            other.execute("DELETE FROM chunks WHERE dataset=? AND idx=4", (ds.id,))
        other.close()
        assert pins.progress("p")["behind"] == 2

    asyncio.run(go())
