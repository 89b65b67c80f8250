"""A lean blocking HTTP/1.1 transport for httpx: the ``Client``'s (client/sync.py).

httpcore spent more of a warm 8-chunk selection's CPU than anything but decompressing:
every socket read a fresh bytes object, copied again into h11's buffer and out of it, with
layers of Python around each piece; and importing it was ~10 ms of every CLI command. Here a
connection reads into one reused buffer and httptools (uvicorn's C parser, a dependency
already) parses the head and undoes the body's framing, handing each piece of the body on as
one bytes object. The chunk batches of selections are asked with ``get``, past httpx, when the
client holds its token; everything else through httpx with this as its transport (its login
and renewal, JSON bodies). Either way the errors raised are httpx's (client/transport.py maps
them).

Only what a batch needs: one request at a time per connection, keep-alive (a connection is
kept only after a complete body, and one the server closed while idle is retried once),
TLS, connect and read timeouts, no proxies (a client that has one configured does not use
this transport), no 1xx answers, no upgrades.
"""

from __future__ import annotations

import collections
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httptools
import httpx

READ_BYTES = 256 << 10  # one socket read at most, into the connection's one buffer
MAX_HEAD = 64 << 10  # a response's status line and headers
MAX_IDLE = 4  # keep-alive connections kept


class _Connection:
    """One socket and its response parser (httptools' callbacks are its methods)."""

    def __init__(self, origin: tuple[str, str, int], sock: socket.socket) -> None:
        self.origin, self.sock = origin, sock
        self.reused = False
        self._buf = bytearray(READ_BYTES)
        self._start()

    def _start(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.pieces: collections.deque[bytes] = collections.deque()
        self.received = 0  # bytes read before the head ended
        self.began = self.head_done = self.complete = self.keep_alive = False

    # --- httptools' callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.began:  # bytes after the answer: nothing asked for them
            raise httpx.RemoteProtocolError("more than one answer to one request")
        self.began = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.pieces.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # --- reading ----------------------------------------------------------------------------

    def receive(self) -> None:
        """Read once and parse what came; at the connection's end, a body delimited by it is
        complete and anything else an error."""
        n = self.sock.recv_into(self._buf)
        if n == 0:
            if self.head_done and self._until_close():
                self.complete = True
                return
            raise httpx.RemoteProtocolError("the subscriber closed the connection mid-answer")
        try:
            self.parser.feed_data(memoryview(self._buf)[:n])
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, httpx.RemoteProtocolError):  # one of ours
                raise exc.__context__ from None
            raise httpx.RemoteProtocolError(f"not an HTTP/1.1 answer ({exc})") from exc
        if not self.head_done:
            self.received += n
            if self.received > MAX_HEAD:
                raise httpx.RemoteProtocolError("the answer's head is too large")

    def _until_close(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def read_head(self) -> int:
        while not self.head_done:
            self.receive()
        status = self.parser.get_status_code()
        if status < 200:
            raise httpx.RemoteProtocolError(f"an answer this client cannot read ({status})")
        return status

    def idle_and_alive(self) -> bool:
        """Nothing to read on an idle connection: the server has not closed it (nor sent
        what nobody asked for)."""
        try:
            if hasattr(select, "poll"):  # select() cannot take descriptors past 1023
                poll = select.poll()
                poll.register(self.sock, select.POLLIN)
                return not poll.poll(0)
            return not select.select([self.sock], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _Body(httpx.SyncByteStream):
    """A response's body as it comes; its connection goes back to the pool once complete."""

    def __init__(self, transport: LeanTransport, conn: _Connection) -> None:
        self._transport, self._conn = transport, conn
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        conn = self._conn
        with _mapped():
            while True:
                while conn.pieces:
                    yield conn.pieces.popleft()
                if conn.complete:
                    break
                conn.receive()
        self._done = True
        self._transport._release(conn, conn.keep_alive)

    def close(self) -> None:
        if not self._done:  # not read to its end: the connection is in an unknown state
            self._done = True
            self._transport._release(self._conn, False)


class LeanTransport(httpx.BaseTransport):
    """httpx's transport for requests to one subscriber, made with the httpx client's
    ``verify`` (False, True or an ssl.SSLContext, as client/auth.py gives)."""

    def __init__(self, verify: ssl.SSLContext | bool) -> None:
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None  # made at the first https request
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        conn = self._exchange(request.url, _head(request) + request.read(), timeout)
        return httpx.Response(
            conn.parser.get_status_code(),
            headers=conn.headers,
            stream=_Body(self, conn),
            extensions={"http_version": b"HTTP/1.1"},
        )

    @contextmanager
    def get(
        self, url: httpx.URL, headers: list[bytes], timeout: httpx.Timeout
    ) -> Iterator[tuple[int, Iterator[bytes]]]:
        """GET ``url`` with no httpx around it: (status, body pieces). ``headers``: lines such
        as ``b"Authorization: Bearer ..."``. A warm selection's request went through ~0.2 ms
        of httpx before it left (twice that after the client sat idle)."""
        lines = [b"GET " + url.raw_path + b" HTTP/1.1", b"Host: " + url.netloc, *headers]
        conn = self._exchange(url, b"\r\n".join(lines) + b"\r\n\r\n", timeout.as_dict())
        body = _Body(self, conn)
        try:
            yield conn.parser.get_status_code(), iter(body)
        finally:
            body.close()

    def _exchange(self, url: httpx.URL, message: bytes, timeout: dict) -> _Connection:
        """Send ``message`` to ``url``'s origin; the connection once the answer's head came."""
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        for retry in (True, False):
            conn = self._reuse(origin) or self._connect(origin, timeout)
            try:
                with _mapped():
                    conn.sock.settimeout(timeout.get("write"))
                    conn.sock.sendall(message)
                    conn.sock.settimeout(timeout.get("read"))
                    conn.read_head()
                break
            except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
                conn.close()
                # a kept connection the server closed meanwhile: once more on a new one
                if not (retry and conn.reused and not conn.head_done):
                    raise
            except BaseException:
                conn.close()
                raise
        return conn

    def _connect(self, origin: tuple[str, str, int], timeout: dict) -> _Connection:
        scheme, host, port = origin
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"{scheme!r} is not http or https")
        with _mapped(connecting=True):
            sock = socket.create_connection((host, port), timeout=timeout.get("connect"))
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if scheme == "https":
                    if self._ssl is None:
                        self._ssl = httpx.create_ssl_context(verify=self._verify)
                    sock = self._ssl.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        return _Connection(origin, sock)

    def _reuse(self, origin: tuple[str, str, int]) -> _Connection | None:
        while True:
            with self._lock:
                conn = next((c for c in reversed(self._idle) if c.origin == origin), None)
                if conn is None:
                    return None
                self._idle.remove(conn)
            if conn.idle_and_alive():
                conn.reused = True
                conn._start()
                return conn
            conn.close()

    def _release(self, conn: _Connection, keep: bool) -> None:
        if not keep:
            conn.close()
            return
        with self._lock:
            self._idle.append(conn)
            surplus = self._idle[:-MAX_IDLE]
            del self._idle[:-MAX_IDLE]
        for old in surplus:
            old.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _head(request: httpx.Request) -> bytes:
    lines = [request.method.encode("ascii") + b" " + request.url.raw_path + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in request.headers.raw]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@contextmanager
def _mapped(connecting: bool = False) -> Iterator[None]:
    """Socket errors as the httpx exceptions client/transport.py maps (a failed TLS
    handshake stays their cause: it tells why)."""
    try:
        yield
    except TimeoutError as exc:
        timeout = httpx.ConnectTimeout if connecting else httpx.ReadTimeout
        raise timeout(str(exc) or "timed out") from exc
    except OSError as exc:
        error = httpx.ConnectError if connecting else httpx.ReadError
        raise error(str(exc) or type(exc).__name__) from exc
