"""The client's side of a listing (caterva/client/listing.py) against a fake subscriber over
httpx.MockTransport: what each page asks, when paging stops, and answers it refuses."""

from __future__ import annotations

import json

import httpx
import pytest

from caterva.client import Client, listing
from caterva.errors import BadRequest, ProtocolError
from caterva.protocol import rest

PATHS = [f"d/{i:03d}.txt" for i in range(23)]


def fake(asked: list[dict], answer=None):
    """A subscriber whose listing pages PATHS by index cursors; ``answer`` overrides it."""

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        asked.append(params)
        if answer is not None:
            return answer(params)
        start = int(params.get("cursor", 0))
        end = start + int(params["limit"])
        lines = [json.dumps({"path": p, "kind": "file"}) for p in PATHS[start:end]]
        headers = {rest.NEXT_HEADER: str(end)} if end < len(PATHS) else {}
        return httpx.Response(200, headers=headers, content="".join(f"{x}\n" for x in lines))

    return Client("http://sub.test", transport=httpx.MockTransport(handler))


def test_pages_follow_the_cursor_and_stop_at_the_limit(monkeypatch):
    monkeypatch.setattr(listing, "PAGE", 10)
    asked: list[dict] = []
    with fake(asked) as client:
        assert [d["path"] for d in client.datasets("r", "d/*")] == PATHS
        assert asked == [
            {"limit": "10", "pattern": "d/*"},
            {"limit": "10", "pattern": "d/*", "cursor": "10"},
            {"limit": "10", "pattern": "d/*", "cursor": "20"},
        ]
        asked.clear()
        pages = list(client.pages("r", limit=12))
        assert [len(p.datasets) for p in pages] == [10, 2] and pages[-1].next == "12"
        assert [a["limit"] for a in asked] == ["10", "2"]  # never more than still wanted
        assert list(client.datasets("r", limit=0)) == []
        with pytest.raises(BadRequest):
            list(client.datasets("r", limit=-1))


@pytest.mark.parametrize(
    "body",
    [
        b'{"path": "a"}\n{"path": "b"}\n',  # more than the one asked for
        b"[1, 2]\n",  # not an object
        b'{"path": 1}\n',  # an object, but no path
        b'{"path": "a"\n',  # not one object a line
        b'{"path": "a",}\n',  # not JSON
    ],
)
def test_answers_that_are_not_a_listing_are_refused(body):
    def answer(params):
        return httpx.Response(200, content=body)

    with fake([], answer) as client, pytest.raises(ProtocolError):
        list(client.datasets("r", limit=1))
