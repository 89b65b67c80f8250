"""The prober's pure parts, without sockets: its backoff, that it probes only what MQTT
cannot vouch for, a few at a time, and what counts as an answer (over httpx's mock
transport)."""

from __future__ import annotations

import asyncio
import json

import httpx

from caterva.subscriber import probe
from caterva.subscriber.discovery import Directory
from caterva.subscriber.probe import Prober, answers, backoff
from tests.unit.test_discovery import announce, online


def test_backoff_doubles_from_a_second_up_to_the_presence_ttl():
    assert [backoff(False, n, 60) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff(True, 0, 60) == 60  # one that answers: checked again each presence_ttl


def test_only_unheard_sources_are_probed_a_few_at_a_time():
    async def main() -> tuple[int, set[str]]:
        d = Directory(presence_ttl=60)
        links = {0: True, 1: True}
        d.linked = links.__getitem__
        for n in range(3 * probe.AT_ONCE):
            online(d, f"p{n}", broker=n % 2)
            announce(d, f"p{n}", [f"p{n}"], broker=n % 2, root=f"r{n}")
        links[1] = False  # half were heard on a broker we lost
        asked: set[str] = set()
        in_flight = most = 0
        release = asyncio.Event()

        async def ask(client, pub_id: str, url: str) -> bool:
            nonlocal in_flight, most
            asked.add(pub_id)
            in_flight += 1
            most = max(most, in_flight)
            await release.wait()
            in_flight -= 1
            return False

        prober = Prober(d, client=None, ask=ask)
        prober.due()
        for _ in range(5):
            await asyncio.sleep(0)
        release.set()
        while prober._tasks:
            await asyncio.sleep(0)
        prober.due()  # each is due again only after its backoff
        assert not prober._tasks
        assert all(not d.offers(f"r{n}")[0].online for n in range(1, 3 * probe.AT_ONCE, 2))
        return most, asked

    most, asked = asyncio.run(main())
    assert most == probe.AT_ONCE
    assert asked == {f"p{n}" for n in range(1, 3 * probe.AT_ONCE, 2)}


def test_what_counts_as_an_answer():
    def health(status: int, body) -> httpx.AsyncClient:
        def answer(request: httpx.Request) -> httpx.Response:
            assert request.url.path == "/v1/health"
            return httpx.Response(status, content=json.dumps(body).encode())

        return httpx.AsyncClient(transport=httpx.MockTransport(answer))

    async def ask(status: int, body) -> bool:
        async with health(status, body) as client:
            client.max_json = 1 << 16
            return await answers(client, "p1", "http://p1:1")

    cases = [
        (200, {"status": "ok", "pub_id": "p1"}, True),  # a publisher
        (200, {"status": "ok", "mirror": {"pub_id": "p1"}}, True),  # a mirror
        (200, {"status": "ok", "pub_id": "p2"}, False),  # someone else at that URL now
        (200, {"status": "ok", "mirror": "p1"}, False),
        (200, ["p1"], False),
        (401, {"error": {"code": "unauthorized", "message": "token"}}, True),  # guarded
        (503, {"error": {"code": "source_offline", "message": "x"}}, False),
        (404, "<html>", False),
    ]
    assert [asyncio.run(ask(s, b)) for s, b, _ in cases] == [want for _, _, want in cases]
