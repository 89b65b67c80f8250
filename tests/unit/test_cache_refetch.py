"""A chunk passed through uncached (it does not fit the budget) and asked again at once: the
second fetch is its own, and the end of the first must not fail it (seen on GET .../file of a
file bigger than the budget: it reads every chunk's size, then the chunks)."""

from __future__ import annotations

import asyncio

from caterva.subscriber.cache import Cache
from caterva.subscriber.state import State
from tests.unit.test_cache import CHUNK, FakeSource, make_info


def test_a_chunk_passed_through_can_be_fetched_again_at_once(tmp_path):
    state = State(tmp_path / "state.db")
    cache = Cache(state, tmp_path / "chunks", budget=CHUNK // 2)  # no chunk fits
    source = FakeSource()
    info, source.data["a"] = make_info("a", 4)
    state.follow("r", 0)
    ds_id = state.put_datasets("r", [info])[info.path]
    ds = next(d for d in state.datasets("r") if d.id == ds_id)

    async def again():
        for i in range(4):
            for _ in range(3):
                assert (await cache.get(ds, [i], source))[i] == source.data["a"][i]

    asyncio.run(again())
    assert cache.stats["passed_through"] == 12 and cache.used == 0
