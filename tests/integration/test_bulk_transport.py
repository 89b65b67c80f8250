"""The subscriber's receive path for chunk batches (caterva/subscriber/bulk.py through
upstream.Source.chunks) against a misbehaving server (tests/integration/batchserver.py):
bodies chunked or of a known length, bad frames, cuts, silence, errors, a redirect. Whatever
comes, the subscriber sees chunks that passed their digests or a caterva error; connections
are reused only after a complete body."""

from __future__ import annotations

import asyncio

import pytest

from caterva.errors import DigestMismatch, NotFound, ProtocolError, SourceOffline
from caterva.subscriber import upstream
from caterva.subscriber.cache import Cache
from caterva.subscriber.state import State
from tests.integration.batchserver import NCHUNKS, SEEN, make_info, running


@pytest.fixture(scope="module")
def url():
    yield from running()


async def fetch(client, url, mode, indices=tuple(range(NCHUNKS))):
    info, _ = make_info(mode)
    source = upstream.Source(client, url)
    return [(i, d, bytes(c)) async for _, i, d, c in source.chunks("r", [(info, list(indices))])]


def run(url, *modes, read_timeout=5.0):
    """The answers (chunks or the error) to requests for ``modes``, one after the other on one
    client."""

    async def go():
        out = []
        async with upstream.new_client(read_timeout=read_timeout) as client:
            for mode in modes:
                try:
                    out.append(await fetch(client, url, mode))
                except Exception as exc:
                    out.append(exc)
        return out

    return asyncio.run(go())


@pytest.mark.parametrize("mode", ["chunked", "length"])
def test_every_chunk_arrives_whole_whatever_the_body_framing(url, mode):
    (got,) = run(url, mode)
    info, chunks = make_info(mode)
    assert got == [(i, info.digests[i], chunks[i]) for i in range(NCHUNKS)]


@pytest.mark.parametrize(
    "mode, error, text",
    [
        ("bad-frame", ProtocolError, "chunk 5 where chunk 1 was due"),
        ("cut-mid-frame", ProtocolError, "middle of a chunk"),
        ("drop-mid-frame", SourceOffline, "unreachable"),
        ("error", NotFound, "no dataset 'error'"),
        ("redirect", ProtocolError, "HTTP 302"),
    ],
)
def test_a_bad_answer_is_a_caterva_error(url, mode, error, text):
    (got,) = run(url, mode)
    assert type(got) is error and text in str(got), got


def test_a_silent_source_is_offline_after_the_read_timeout(url):
    (got,) = run(url, "silent", read_timeout=0.3)
    assert isinstance(got, SourceOffline) and "TimeoutError" in str(got)


def test_a_connection_is_reused_only_after_a_complete_body(url):
    SEEN.clear()
    got = run(url, "chunked", "length", "bad-frame", "chunked", "error", "length")
    assert isinstance(got[2], ProtocolError) and isinstance(got[4], NotFound)
    ports = [port for _, port, _ in SEEN]
    assert ports[0] == ports[1] == ports[2]  # complete bodies: the same connection
    assert ports[3] != ports[2]  # bad-frame left its body unread: that connection is closed
    assert ports[3] == ports[4] == ports[5]  # an error's body is read whole: reused


def test_every_byte_is_verified_before_it_is_cached(url, tmp_path):
    """A chunk whose bytes differ from the digest it came with is refused by the cache; the
    chunk before it is kept, nothing of it or after it."""
    state = State(tmp_path / "state.db")
    cache = Cache(state, tmp_path / "chunks", budget=1 << 30)
    info, chunks = make_info("wrong-bytes")
    state.follow("r", 0)
    ds_id = state.put_datasets("r", [info])[info.path]
    dataset = next(d for d in state.datasets("r") if d.id == ds_id)

    async def go():
        async with upstream.new_client() as client:

            async def fetcher(wanted):
                source = upstream.Source(client, url)
                async for n, i, digest, data in source.chunks("r", [(info, wanted[0][1])]):
                    yield wanted[n][0], i, digest, data

            with pytest.raises(DigestMismatch):
                await cache.get(dataset, list(range(NCHUNKS)), fetcher)

    asyncio.run(go())
    assert set(state.present(ds_id, list(range(NCHUNKS)))) == {0}
    files = list((tmp_path / "chunks" / str(ds_id)).iterdir())
    assert [f.name for f in files] == [f"0.{info.digests[0]}"]
    assert files[0].read_bytes() == chunks[0]


@pytest.mark.parametrize(
    "answer, text",
    [
        (b"garbage\r\n\r\n", "not an HTTP response"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + b"X: y\r\n" * 20000,
            "trailers",
        ),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000, "head is too large"),
    ],
)
def test_what_uvicorn_would_never_send_is_a_protocol_error(answer, text):
    """A raw server on loopback, for answers no ASGI app can make."""

    async def go():
        async def reply(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            await reader.read()  # until the client gives up and closes

        server = await asyncio.start_server(reply, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, upstream.new_client() as client:
            with pytest.raises(ProtocolError, match=text):
                await fetch(client, f"http://127.0.0.1:{port}", "raw")

    asyncio.run(go())
