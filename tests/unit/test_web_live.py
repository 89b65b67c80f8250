"""The page's event stream (web/live.py) over a real Events fan-out: what a page hears, the
overflow notice when it fell behind, and nothing left registered once it is gone."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from caterva.subscriber.events import Events
from caterva.subscriber.web import live


def fake_request(events: Events, listeners: list) -> SimpleNamespace:
    directory = SimpleNamespace(listeners=listeners)
    return SimpleNamespace(
        state=SimpleNamespace(events=events, follower=SimpleNamespace(directory=directory)),
        app=SimpleNamespace(state=SimpleNamespace(auth=None)),  # no --auth: every root readable
    )


def data(message: str) -> dict:
    assert message.startswith("data: "), message
    return json.loads(message[len("data: ") :])


def test_a_page_hears_changes_and_offers_of_its_root_then_an_overflow_notice(monkeypatch):
    monkeypatch.setattr(live, "QUEUE", 5)

    async def run() -> None:
        events, listeners = Events(), []
        stream = live._merged(fake_request(events, listeners), "a")
        assert (await anext(stream)).startswith("event: ready")
        (on_offer,) = listeners
        events.emit("b", "update", path="x")  # another root: not for this page
        on_offer("a", None)
        events.emit("a", "update", path="x")
        assert data(await anext(stream)) == {"root": "a", "event": "offer", "online": False}
        assert data(await anext(stream))["event"] == "update"
        for i in range(8):  # more than the queue holds while the page does not read
            events.emit("a", "update", path=str(i))
        heard = [data(await anext(stream)) for _ in range(5)]
        assert [e["path"] for e in heard] == ["0", "1", "2", "3", "4"]
        assert data(await anext(stream)) == {"event": "overflow"}
        events.close(asyncio.get_running_loop())  # the service stops: so does the stream
        assert [m async for m in stream] == []
        assert listeners == []

    asyncio.run(run())
