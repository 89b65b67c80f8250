"""The announcer's ordering and bookkeeping with a fake bus (no sockets): change events are
numbered per session, queued while the broker is away, and recorded as announced only once
acknowledged."""

from __future__ import annotations

import asyncio
import json

import blosc2
import numpy as np

from caterva.protocol import topics
from caterva.publisher.announce import Announcer
from caterva.publisher.catalog import Catalog
from caterva.publisher.store import Store


class FakeBus:
    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.sent: list[tuple[str, dict, bool]] = []
        self.refuse: set[str] = set()  # topics whose publish is not acknowledged

    async def publish(self, topic, payload, *, retain=False, qos=1, timeout=5):
        if topic in self.refuse:
            return False
        self.sent.append((topic, json.loads(payload), retain))
        return True


def make_array(path, value):
    data = np.full((20, 10), value, dtype="f4")
    blosc2.asarray(data, chunks=(5, 10), blocks=(5, 10), urlpath=str(path), mode="w")


def test_events_queue_while_away_and_commit_only_when_acknowledged(tmp_path):
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    state.mkdir()
    make_array(root / "a.b2nd", 1)
    make_array(root / "b.b2nd", 1)
    store = Store.open(state)
    catalog = Catalog("demo", root, state / "frames")

    async def scenario():
        bus = FakeBus()
        ann = Announcer(
            name="demo",
            url="http://h:1",
            pub_id="p1",
            session="s1",
            broker="mqtt://127.0.0.1:1",
            catalog=catalog,
            store=store,
        )
        ann.presence.bus = bus
        changes = topics.changes("p1", "demo")

        await ann.changed(catalog.scan())  # broker away: queued, nothing recorded
        assert bus.sent == [] and store.load() == {}

        bus.connected.set()
        await ann.presence.birth()
        assert [(t, m.get("seq"), m.get("path")) for t, m, _ in bus.sent] == [
            (topics.status("p1"), None, None),
            (changes, 1, "a.b2nd"),
            (changes, 2, "b.b2nd"),
            (topics.root("p1", "demo"), None, None),
        ]
        assert bus.sent[0][1]["state"] == "online" and bus.sent[0][2]  # retained birth
        assert bus.sent[-1][1]["manifest_etag"] == catalog.manifest.etag
        assert set(store.load()) == {"a.b2nd", "b.b2nd"}

        bus.sent.clear()
        bus.refuse.add(changes)  # the broker stops acknowledging events
        before = store.load()["b.b2nd"]
        make_array(root / "b.b2nd", 2)  # every chunk changes
        await ann.changed(catalog.scan())
        # the announcement still tells readers the manifest moved on; the event waits
        [(topic, announcement, _)] = bus.sent
        assert (topic, announcement["manifest_etag"]) == (
            topics.root("p1", "demo"),
            catalog.manifest.etag,
        )
        assert store.load()["b.b2nd"] == before  # not acknowledged, so not recorded

        bus.sent.clear()
        bus.refuse.clear()
        await ann.changed(catalog.scan())  # nothing new, but the queued event goes out
        (topic, event, retained), (_, announcement, _) = bus.sent
        assert (topic, retained) == (changes, False)
        assert (event["seq"], event["op"], event["chunks"]) == (3, "update", [0, 1, 2, 3])
        assert announcement["manifest_etag"] == event["manifest_etag"]
        assert store.load()["b.b2nd"][1].endswith(f'"etag":"{event["etag"]}"}}')

    asyncio.run(scenario())
    store.close()
