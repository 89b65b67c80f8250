"""The client's receive path (caterva/client/lean.py), for the chunk batches of selections,
against a misbehaving uvicorn server (tests/integration/batchserver.py) and a raw server
for what no ASGI app sends: bodies chunked or of a known length, bad frames, cuts, silence,
errors, connections closed while kept. Whatever comes, a read gets the chunks whole or a
caterva error; connections are kept only after a complete body."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from caterva.client import Client
from caterva.client import sync as client_sync
from caterva.client.calls import Calls
from caterva.client.lean import Pool
from caterva.errors import NotFound, ProtocolError, Unavailable
from tests.integration.batchserver import NCHUNKS, SEEN, frames, listen, make_info, running


@pytest.fixture(scope="module")
def url():
    yield from running()


def read(client: Client, mode: str) -> dict[int, bytes]:
    """Every chunk of dataset ``mode``, as a selection reads them (one batch, decoders)."""
    info, _ = make_info(mode)
    got: dict[int, bytes] = {}
    take = lambda i, digest, data: got.__setitem__(i, data)  # noqa: E731
    client._take(Calls.chunks("r", info, list(range(NCHUNKS)), take=take)).finish()
    return got


def outcomes(url: str, *modes: str) -> list:
    with Client(url) as client:
        assert isinstance(client._pool, Pool) and client._http is None
        out = []
        for mode in modes:
            try:
                out.append(read(client, mode))
            except Exception as exc:
                out.append(exc)
        return out


@pytest.mark.parametrize("mode", ["chunked", "length"])
def test_every_chunk_arrives_whole_whatever_the_body_framing(url, mode):
    SEEN.clear()
    (got,) = outcomes(url, mode)
    assert got == dict(enumerate(make_info(mode)[1]))
    assert SEEN == [(mode, SEEN[0][1], False)]  # over client/lean.py, not httpx


@pytest.mark.parametrize(
    "mode, error, text",
    [
        ("bad-frame", ProtocolError, "chunk 5 where chunk 1 was due"),
        ("cut-mid-frame", ProtocolError, "middle of a chunk"),
        ("drop-mid-frame", Unavailable, "lost the connection"),
        ("error", NotFound, "no dataset 'error'"),
    ],
)
def test_a_bad_answer_is_a_caterva_error(url, mode, error, text):
    (got,) = outcomes(url, mode)
    assert type(got) is error and text in str(got), got


def test_a_silent_subscriber_times_out(url, monkeypatch):
    monkeypatch.setattr(client_sync, "TIMEOUT", httpx.Timeout(0.3))
    (got,) = outcomes(url, "silent")
    assert isinstance(got, Unavailable) and "did not answer in time" in str(got)


def test_a_connection_is_kept_only_after_a_complete_body(url):
    SEEN.clear()
    got = outcomes(url, "chunked", "length", "bad-frame", "chunked", "error", "length")
    assert isinstance(got[2], ProtocolError) and isinstance(got[4], NotFound)
    ports = [port for _, port, _ in SEEN]
    assert ports[0] == ports[1] == ports[2]  # complete bodies: the same connection
    assert ports[3] != ports[2]  # bad-frame left its body unread: that connection is closed
    assert ports[3] == ports[4] == ports[5]  # an error's body is read whole: kept


CLOSE = object()  # in a raw server's script: close the connection


def raw_server(script: list, heads: list[bytes] | None = None):
    """Answers requests from ``script`` in turn, on whatever connection they come: an
    answer's bytes, or CLOSE (the request is read, then its connection closed unanswered), or
    (bytes, CLOSE) (answered, then closed). Returns the address and the connections' count;
    the requests' heads go to ``heads``."""
    lock = threading.Lock()
    connections = [0]

    def handle(conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                with lock:
                    if heads is not None:
                        heads.append(head)
                    step = script.pop(0)
                if step is CLOSE:
                    return
                conn.sendall(step[0] if isinstance(step, tuple) else step)
                if isinstance(step, tuple):
                    return

    def accept(sock: socket.socket) -> None:
        while True:
            conn, _ = sock.accept()
            connections[0] += 1
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    return listen(accept), connections


def answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_a_kept_connection_the_server_closed_is_replaced():
    """Closed while idle (seen before the next request is sent), or as the next request came
    (that request is sent again, once, on a new connection)."""
    ok = answer(frames("raw", list(range(NCHUNKS))))
    address, connections = raw_server([(ok, CLOSE), ok, CLOSE, ok, ok])
    want = dict(enumerate(make_info("raw")[1]))
    with Client(address) as client:
        assert [read(client, "raw") for _ in range(4)] == [want] * 4
    assert connections == [3]


@pytest.mark.parametrize(
    "raw, text",
    [
        (b"garbage\r\n\r\n", "not an HTTP/1.1 answer"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not an HTTP/1.1"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000, "head is too large"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", "mid-answer"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "Upgrade"),
        (b"HTTP/1.1 100 Continue\r\n\r\n", "cannot read"),
    ],
)
def test_what_uvicorn_would_never_send_is_a_caterva_error(raw, text):
    address, _ = raw_server([(raw, CLOSE)])
    with Client(address) as client, pytest.raises(Unavailable, match=text):
        read(client, "raw")


def test_bytes_after_an_answer_are_an_error_not_the_next_answer():
    extra = answer(b"done") + answer(b"next")
    address, _ = raw_server([(extra, CLOSE)])
    with Client(address) as client, pytest.raises(Unavailable, match="more than"):
        read(client, "raw")


def test_batches_go_through_a_test_transport_or_a_proxy(monkeypatch):
    want = dict(enumerate(make_info("raw")[1]))
    body = frames("raw", list(range(NCHUNKS)))
    asked: list[str] = []

    def mock(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, content=body)

    with Client("http://127.0.0.1:9", transport=httpx.MockTransport(mock)) as client:
        assert read(client, "raw") == want
    assert len(asked) == 1 and asked[0].endswith("/raw")

    heads: list[bytes] = []
    proxy, _ = raw_server([answer(body)], heads)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    with Client("http://127.0.0.1:9") as client:
        assert read(client, "raw") == want
    assert len(heads) == 1 and heads[0].startswith(b"GET http://127.0.0.1:9/")
