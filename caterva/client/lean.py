"""A lean blocking HTTP/1.1 client: the ``Client``'s (client/sync.py), no httpx in it.

httpcore spent more of a warm 8-chunk selection's CPU than anything but decompressing:
every socket read a fresh bytes object, copied again into h11's buffer and out of it, with
layers of Python around each piece; and importing httpx was ~25 ms of every CLI command. Here
a connection reads into one reused buffer and httptools (uvicorn's C parser, a dependency
already) parses the head and undoes the body's framing, handing each piece of the body on as
one bytes object. Failures are client/transport.py's ``Failure`` (``mapped`` there makes them
caterva errors).

Only what the client needs: one request at a time per connection, keep-alive (a connection is
kept only after a complete body, and one the server closed while idle is retried once), TLS,
connect and read timeouts, no proxies (a client that has one configured uses httpx), no 1xx
answers, no upgrades.
"""

from __future__ import annotations

import collections
import json
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httptools

from caterva.client.transport import Failure, Timeout

if TYPE_CHECKING:
    import ssl  # imported for https only: a plain-http command spares it

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
            raise Failure("broken", "more than one answer to one request")
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
            raise Failure("broken", "the subscriber closed the connection mid-answer")
        try:
            self.parser.feed_data(memoryview(self._buf)[:n])
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, Failure):  # one of ours
                raise exc.__context__ from None
            raise Failure("broken", f"not an HTTP/1.1 answer ({exc})") from exc
        if not self.head_done:
            self.received += n
            if self.received > MAX_HEAD:
                raise Failure("broken", "the answer's head is too large")

    def _until_close(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def read_head(self) -> int:
        while not self.head_done:
            self.receive()
        status = self.parser.get_status_code()
        if status < 200:
            raise Failure("broken", f"an answer this client cannot read ({status})")
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


class Headers(dict):
    """A response's headers, looked up by name in any case (stored in lower case)."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class Answer:
    """A response: ``status_code``, ``headers``, and its body as it
    comes (``iter_bytes``, ``iter_lines``) or whole (``read``, then ``content``, ``json()``).
    Its connection goes back to the pool once the body is read to its end; ``close`` drops
    it otherwise (its state unknown)."""

    def __init__(self, pool: Pool, conn: _Connection) -> None:
        self._pool, self._conn = pool, conn
        self.status_code = conn.parser.get_status_code()
        self.headers = Headers(
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in conn.headers
        )
        self._done = False
        self._content: bytes | None = None

    def iter_bytes(self) -> Iterator[bytes]:
        conn = self._conn
        with _mapped():
            while True:
                while conn.pieces:
                    yield conn.pieces.popleft()
                if conn.complete:
                    break
                conn.receive()
        self._done = True
        self._pool._release(conn, conn.keep_alive)

    def iter_lines(self) -> Iterator[str]:
        rest = b""
        for data in self.iter_bytes():
            *lines, rest = (rest + data).split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode()
        if rest:
            yield rest.rstrip(b"\r").decode()

    def read(self) -> bytes:
        if self._content is None:
            self._content = b"".join(self.iter_bytes())
        return self._content

    @property
    def content(self) -> bytes:
        return self.read()

    def json(self) -> Any:
        return json.loads(self.read())

    def close(self) -> None:
        if not self._done:  # not read to its end: the connection is in an unknown state
            self._done = True
            self._pool._release(self._conn, False)


class Pool:
    """Connections to a subscriber, kept alive between requests; ``verify``: False, True or
    an ssl.SSLContext (client/auth.py)."""

    def __init__(self, verify: ssl.SSLContext | bool) -> None:
        self._verify = verify
        self._ssl: ssl.SSLContext | None = None  # made at the first https request
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    @contextmanager
    def request(
        self, method: str, url: str, headers: list[bytes], body: bytes, timeout: Timeout
    ) -> Iterator[Answer]:
        """``method`` ``url`` (absolute) with ``headers`` (lines such as ``b"Accept: x"``)
        and ``body``; the answer once its head came, closed at the end."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1".encode(), f"Host: {parts.netloc}".encode()]
        lines += headers
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: %d" % len(body))
        origin = (parts.scheme, parts.hostname or "", parts.port or _PORTS.get(parts.scheme, 0))
        message = b"\r\n".join(lines) + b"\r\n\r\n" + body
        answer = Answer(self, self._exchange(origin, message, timeout))
        try:
            yield answer
        finally:
            answer.close()

    def _exchange(
        self, origin: tuple[str, str, int], message: bytes, timeout: Timeout
    ) -> _Connection:
        """Send ``message`` to ``origin``; the connection once the answer's head came."""
        for retry in (True, False):
            conn = self._reuse(origin) or self._connect(origin, timeout)
            try:
                with _mapped():
                    conn.sock.settimeout(timeout.read)
                    conn.sock.sendall(message)
                    conn.read_head()
                break
            except Failure as exc:
                conn.close()
                # a kept connection the server closed meanwhile: once more on a new one
                if not (retry and conn.reused and not conn.head_done and exc.kind == "broken"):
                    raise
            except BaseException:
                conn.close()
                raise
        return conn

    def _connect(self, origin: tuple[str, str, int], timeout: Timeout) -> _Connection:
        scheme, host, port = origin
        if scheme not in _PORTS:
            raise Failure("scheme", f"{scheme!r} is not http or https")
        with _mapped(connecting=True):
            sock = socket.create_connection((host, port), timeout=timeout.connect)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if scheme == "https":
                    if self._ssl is None:
                        self._ssl = _ssl_context(self._verify)
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


_PORTS = {"http": 80, "https": 443}


def _ssl_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext:
    import ssl

    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@contextmanager
def _mapped(connecting: bool = False) -> Iterator[None]:
    """Socket errors as Failures (a failed TLS handshake stays their cause: it tells why)."""
    try:
        yield
    except TimeoutError as exc:
        kind = "connect-timeout" if connecting else "read-timeout"
        raise Failure(kind, str(exc) or "timed out") from exc
    except OSError as exc:
        raise Failure(
            "connect" if connecting else "broken", str(exc) or type(exc).__name__
        ) from exc
