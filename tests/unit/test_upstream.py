"""The subscriber's one boundary to sources (caterva/subscriber/upstream.py): whatever httpx
raises, or a source answers, reaches the rest of the subscriber as a caterva error."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from caterva.errors import (
    NotFound,
    ProtocolError,
    SourceOffline,
    SourceRefused,
    UnknownRoot,
    from_response,
)
from caterva.subscriber import upstream


def manifest_of(handler, url="http://source:1"):
    async def go():
        async with upstream.new_client(transport=httpx.MockTransport(handler)) as client:
            return await upstream.Source(client, url).manifest("demo")

    return asyncio.run(go())


def test_a_source_error_is_the_caterva_error_it_names():
    def unknown(request):
        return httpx.Response(404, json=UnknownRoot("no root 'demo'").to_payload())

    with pytest.raises(UnknownRoot, match="no root 'demo'"):
        manifest_of(unknown)


def test_a_refusal_names_this_subscriber_s_credentials():
    def refuse(request):
        return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "no"}})

    with pytest.raises(SourceRefused, match="--source-token"):
        manifest_of(refuse)


def test_what_is_not_a_caterva_answer_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="unexpected HTTP 502"):
        manifest_of(lambda request: httpx.Response(502, text="<html>bad gateway</html>"))


def test_a_source_away_is_offline():
    def away(request):
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(SourceOffline, match="unreachable"):
        manifest_of(away)


def test_an_invalid_announced_url_is_a_caterva_error():
    """A source's URL comes from an MQTT announcement: one httpx refuses to parse (it raises
    InvalidURL, which is not an httpx.HTTPError) must not escape as a foreign exception."""
    with pytest.raises(ProtocolError, match="invalid"):
        manifest_of(lambda request: httpx.Response(200), url="http://a\x00b:1")


@pytest.mark.parametrize("body", [b"", b"\xff\xfe", b"[" * 100_000, b'"text"', b"{}"])
def test_from_response_never_fails_on_a_body(body):
    error = from_response(503, body)
    assert type(error) is ProtocolError and "503" in error.message


def test_from_response_rebuilds_the_class_and_detail():
    body = b'{"error": {"code": "not_found", "message": "m", "detail": {"a": 1}}}'
    error = from_response(404, body)
    assert type(error) is NotFound and error.message == "m" and error.detail == {"a": 1}
