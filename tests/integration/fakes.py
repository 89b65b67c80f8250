"""Hostile peers for the integration tests: a source that answers what a test tells it to
(and remembers every request), a source that accepts connections and never answers, a forged
announcement of either over a real broker, and requests written on a raw socket (a body
announced and never sent)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from caterva.mqtt import BrokerURL
from caterva.protocol import topics
from caterva.protocol.messages import Announcement, Status

BIG = 43 * 10**6  # the size of body that stalled both services for seconds


class FakeSource:
    """An HTTP server on a free loopback port: ``answer(handler)`` writes each response;
    ``requests`` holds (method, path, headers) of every request, in order."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler], None]) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                fake.requests.append((self.command, self.path, dict(self.headers)))
                try:
                    answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the reader hung up: what a refused answer looks like from here

            do_GET = do_POST = _any

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send_json(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class Silent:
    """A port that accepts connections (the kernel does, into the backlog) and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


@contextmanager
def mqtt(broker: str) -> Iterator[paho.Client]:
    """A connected paho client (its network loop running) for the ``with`` block."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    address = BrokerURL.parse(broker)
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def announce(
    broker: str,
    pub_id: str,
    root: str,
    url: str,
    *,
    origin: str,
    state: str = "online",
    datasets: int = 1,
) -> None:
    """Retain on ``broker`` what a source ``pub_id`` at ``url`` would say about ``root``: its
    status, and (online) an announcement as a mirror of ``origin``. Waits for the acks."""
    with mqtt(broker) as client:
        status = Status(state, session="fake-session", url=url)
        sent = [client.publish(topics.status(pub_id), status.to_bytes(), qos=1, retain=True)]
        if state == "online":
            body = Announcement(
                root=root,
                url=url,
                session="fake-session",
                manifest_etag="fake",
                datasets=datasets,
                origin=origin,
                hops=[origin, pub_id],
            )
            sent.append(
                client.publish(topics.root(pub_id, root), body.to_bytes(), qos=1, retain=True)
            )
        for info in sent:
            info.wait_for_publish(timeout=30)


def publish_raw(broker: str, topic: str, payload: bytes) -> None:
    """One message as is (QoS 1, not retained), acked by the broker."""
    with mqtt(broker) as client:
        client.publish(topic, payload, qos=1).wait_for_publish(timeout=30)


# --- raw HTTP ----------------------------------------------------------------------------


def read_answer(sock: socket.socket) -> tuple[int, dict]:
    """(status, JSON body) of the HTTP answer on ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"the connection closed without an answer: {data!r}"
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int({k.lower(): v for k, v in headers.items()}["content-length"])
    while len(body) < length:
        piece = sock.recv(65536)
        assert piece, "the connection closed in the middle of the answer"
        body += piece
    return int(lines[0].split()[1]), json.loads(body)


def connect(url: str) -> socket.socket:
    address = urlsplit(url)
    return socket.create_connection((address.hostname, address.port), timeout=20)


def post_head(url: str, path: str, headers: dict[str, str] | None = None, **more: str) -> bytes:
    fields = {
        "Host": urlsplit(url).netloc,
        "Content-Type": "application/json",
        **(headers or {}),
        **more,
    }
    return (
        f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    ).encode()
