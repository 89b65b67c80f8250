"""A Client's connections read big pieces (transport.read_in_big_pieces): fewer reads, each
with httpcore's and h11's work around it. Other httpx clients of the process are left as
they were."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest

from caterva import Client
from caterva.client.transport import READ_BYTES

BODY = bytes(range(256)) * 8192  # 2 MiB


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_client_reads_big_pieces_and_other_httpx_clients_do_not(server, monkeypatch):
    asked: list[int] = []
    read = httpcore._backends.sync.SyncStream.read

    def counted(self, max_bytes, timeout=None):
        asked.append(max_bytes)
        return read(self, max_bytes, timeout)

    monkeypatch.setattr(httpcore._backends.sync.SyncStream, "read", counted)
    with Client(server) as client, client._http.stream("GET", "/") as response:
        assert response.read() == BODY
    assert asked and set(asked) == {READ_BYTES}
    asked.clear()
    with httpx.Client() as plain:
        assert plain.get(server).content == BODY
    assert asked and max(asked) < READ_BYTES
