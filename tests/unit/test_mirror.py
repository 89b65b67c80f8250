"""A mirror's MQTT side with a fake bus and a fake upstream (no sockets): what it announces,
the change events it passes downstream (its own session, seq per root), for change events and
for resyncs alike, and that every request it makes upstream names it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from caterva.protocol import rest, topics
from caterva.protocol.messages import Announcement, Change, Status
from caterva.protocol.metadata import DatasetInfo, Manifest
from caterva.protocol.seal import sign
from caterva.subscriber.cache import Cache
from caterva.subscriber.discovery import Directory
from caterva.subscriber.events import Events
from caterva.subscriber.follower import Follower
from caterva.subscriber.mirror import Mirror, via_hook
from caterva.subscriber.state import State
from caterva.subscriber.upstream import new_client


class FakeBus:
    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.connected.set()
        self.sent: list[tuple[str, dict | None, bool]] = []
        self.final: list[tuple[str, bytes]] = []

    async def start(self) -> None:
        pass

    async def stop(self, final=()) -> None:
        self.final = list(final)

    async def publish(self, topic, payload, *, retain=False, qos=1, timeout=5):
        self.sent.append((topic, json.loads(payload) if payload else None, retain))
        return True


def dataset(path: str, digests: list[str]) -> DatasetInfo:
    n = len(digests)
    return DatasetInfo(
        path=path,
        kind="b2nd",
        shape=[n],
        dtype="<f8",
        chunks=[1],
        blocks=[1],
        nchunks=n,
        chunksize=8,
        nbytes=8 * n,
        cbytes=40 * n,
        cparams={},
        vlmeta={},
        digests=digests,
    )


KEY = Ed25519PrivateKey.generate()


class Upstream:
    """The origin's source API, from a signed manifest we can change; remembers request
    headers."""

    def __init__(self, *datasets: DatasetInfo) -> None:
        self.version = 0
        self.set(*datasets)
        self.via: list[str | None] = []

    def set(self, *datasets: DatasetInfo) -> None:
        self.version += 1
        manifest = Manifest("demo", list(datasets))
        self.manifest = replace(
            manifest,
            seal=sign(
                KEY, root="demo", origin="o", version=self.version, manifest_etag=manifest.etag
            ),
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.via.append(request.headers.get(rest.VIA_HEADER))
        if request.url.path == rest.manifest("demo"):
            if rest.etag_matches(request.headers.get("if-none-match", ""), self.manifest.etag):
                return httpx.Response(304)
            return httpx.Response(200, content=self.manifest.to_bytes())
        path = request.url.path.removeprefix(rest.info("demo", ""))
        return httpx.Response(200, content=self.manifest.by_path()[path].to_bytes())


def origin_announces(directory: Directory, manifest: Manifest) -> None:
    directory.on_status(0, "o", Status("online", "os"))
    body = Announcement(
        root="demo",
        url="http://o:1",
        session="os",
        manifest_etag=manifest.etag,
        datasets=len(manifest.datasets),
        origin="o",
        hops=["o"],
    )
    directory.on_announcement(0, "o", "demo", body)
    directory.synced.set()  # what the start-up barrier does once the retained hints are in


def test_announcements_and_change_events_travel_down(tmp_path):
    upstream = Upstream(dataset("a.b2nd", ["a0", "a1", "a2"]), dataset("b.b2nd", ["b0"]))
    state = State(tmp_path / "state.db")
    cache = Cache(state, tmp_path / "chunks", 1 << 20)
    directory = Directory(self_id="m")
    origin_announces(directory, upstream.manifest)

    async def scenario():
        client = new_client(
            transport=httpx.MockTransport(upstream.handle), event_hooks={"request": [via_hook("m")]}
        )
        events = Events()
        follower = Follower(state, cache, directory, client, events)
        mirror = Mirror(
            pub_id="m",
            session="ms",
            url="http://m:1",
            broker="mqtt://127.0.0.1:1",
            follower=follower,
            directory=directory,
        )
        directory.listeners += [follower.on_offer, mirror.on_offer]  # as app.start wires them
        events.listeners.append(mirror.on_event)
        bus = mirror.bus = mirror.presence.bus = FakeBus()
        await mirror.start()

        async def sent() -> list[tuple[str, dict | None, bool]]:
            await mirror._work.join()
            out, bus.sent = bus.sent, []
            return out

        await mirror.presence.birth()  # what a connect does
        assert await sent() == [
            (topics.status("m"), Status("online", "ms", "http://m:1").to_dict(), True)
        ]  # nothing followed: nothing announced

        await follower.follow("demo")
        [(topic, announced, retained)] = await sent()
        assert (topic, retained) == (topics.root("m", "demo"), True)
        assert announced["hops"] == ["o", "m"] and announced["origin"] == "o"
        assert (announced["url"], announced["session"], announced["datasets"]) == (
            "http://m:1",
            "ms",
            2,
        )
        assert announced["manifest_etag"] == upstream.manifest.etag

        # a resync finds three changes: each becomes an event of ours, then the announcement
        upstream.set(dataset("a.b2nd", ["a0", "A1", "a2"]), dataset("c.b2nd", ["c0", "c1"]))
        await follower.resync("demo")
        *events, (topic, announced, _) = await sent()
        changes = topics.changes("m", "demo")
        assert [
            (t, e["seq"], e["op"], e["path"], e["chunks"], e["session"], r) for t, e, r in events
        ] == [
            (changes, 1, "delete", "b.b2nd", None, "ms", False),
            (changes, 2, "update", "a.b2nd", [1], "ms", False),
            (changes, 3, "create", "c.b2nd", None, "ms", False),
        ]
        assert all(e["manifest_etag"] == upstream.manifest.etag for _, e, _ in events)
        assert announced["manifest_etag"] == upstream.manifest.etag

        # a change event from the origin goes on with our session and our next seq
        upstream.set(dataset("a.b2nd", ["a0", "A1", "A2"]), dataset("c.b2nd", ["c0", "c1"]))
        a = upstream.manifest.by_path()["a.b2nd"]
        await follower.on_change(
            "o",
            Change(
                root="demo",
                path="a.b2nd",
                op="update",
                session="os",
                seq=7,
                etag=a.etag,
                chunks=[2],
                manifest_etag=upstream.manifest.etag,
            ),
        )
        await asyncio.gather(*follower._tasks)  # the event made a resync, in the background
        (_, event, _), (_, announced, _) = await sent()
        assert (event["seq"], event["op"], event["chunks"], event["etag"]) == (
            4,
            "update",
            [2],
            a.etag,
        )
        assert announced["manifest_etag"] == event["manifest_etag"] == upstream.manifest.etag

        origin_announces(directory, upstream.manifest)  # the same chain again: nothing new
        assert await sent() == []
        await mirror.presence.birth()  # a discover or a reconnect: everything again
        assert [t for t, _, _ in await sent()] == [topics.status("m"), topics.root("m", "demo")]

        await follower.unfollow("demo")
        assert await sent() == [(topics.root("m", "demo"), None, True)]  # withdrawn
        await mirror.stop()
        assert bus.final == [(topics.status("m"), Status("offline", "ms", "http://m:1").to_bytes())]
        await client.aclose()
        assert set(upstream.via) == {"m"}

    asyncio.run(scenario())
    state.close()
