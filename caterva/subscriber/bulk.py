"""A lean HTTP/1.1 client for the chunk batches a subscriber streams from its sources.

httpx spent about half of a cold download's event-loop time receiving: every socket read a
fresh bytes object, copied again into h11's buffer and out of it, with layers of Python around
each piece. Here a connection is an asyncio BufferedProtocol: the socket reads straight into
1 MiB buffers, the head is parsed by httptools (uvicorn's C parser), and the body's framing
(Content-Length or chunked) is undone over memoryviews of those buffers, so a chunk's bytes
are copied once after the kernel's copy (when rest.BatchReader joins them).

Only what the chunk streams need: one request at a time per connection, keep-alive per
origin (a connection goes back to the pool only after a complete body), TLS, a read timeout
(no byte for that long), no redirects, no content codings, no 1xx. Errors: OSError
(TimeoutError among them) when the connection fails or ends early, BadHTTP when what came is
not HTTP/1.x (a test's fake source may answer HTTP/1.0). caterva.subscriber.upstream maps
them, as it does httpx's.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httptools

READ_BYTES = 1 << 20  # one socket read at most; a new buffer when less than LOW_ROOM is left
LOW_ROOM = 64 << 10
HIGH_WATER = 8 << 20  # received but not consumed: the socket is not read beyond this
MAX_HEAD = 64 << 10  # a response's status line and headers
MAX_LINE = 4096  # a chunk-size line (with extensions) or a trailer line


class BadHTTP(Exception):
    """What the server sent is not an HTTP/1.x response we can read."""


class _Protocol(asyncio.BufferedProtocol):
    """Reads into big buffers; never rewrites bytes it handed out (views of them stay valid:
    a full buffer is replaced, and lives as long as a view of it does)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray(READ_BYTES)
        self._end = 0
        self.ready: collections.deque[memoryview] = collections.deque()
        self._pending = 0
        self._paused = False
        self._waiter: asyncio.Future | None = None
        self.eof = False
        self.error: BaseException | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        if len(self._buf) - self._end < LOW_ROOM:
            self._buf, self._end = bytearray(READ_BYTES), 0
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        start, self._end = self._end, self._end + nbytes
        self.ready.append(memoryview(self._buf)[start : self._end])
        self._pending += nbytes
        if self._pending > HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof, self.error = True, exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Until something more arrived (in ``ready``) or the connection ended (``eof``)."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        finally:
            self._waiter = None

    def take(self) -> memoryview:
        piece = self.ready.popleft()
        self._pending -= len(piece)
        if self._paused and self._pending <= HIGH_WATER // 2:
            self._paused = False
            self.transport.resume_reading()
        return piece

    def untake(self, piece: memoryview) -> None:
        """Give back the part of a piece not used yet: it comes first again."""
        if piece:
            self.ready.appendleft(piece)
            self._pending += len(piece)


class Connection:
    def __init__(self, key: tuple, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self.key, self.transport, self.protocol = key, transport, protocol
        self.reused = False

    def usable(self) -> bool:
        return not self.protocol.eof and not self.transport.is_closing()

    def close(self) -> None:
        self.transport.abort()  # nothing of ours is left to send; do not wait on a peer


class Response:
    """A response's head, and its body as memoryviews (framing undone) from ``body()``."""

    def __init__(self, conn: Connection, read_timeout: float | None) -> None:
        self.conn, self.timeout = conn, read_timeout
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.complete = False
        self._length: int | None = None
        self._chunked = False

    def header(self, name: bytes) -> str | None:
        """The last value of header ``name`` (lower case)."""
        found = [v for k, v in self.headers if k.lower() == name]
        return found[-1].decode("latin-1") if found else None

    # --- reading the connection ----------------------------------------------------------

    async def _piece(self) -> memoryview:
        """The next piece received; ConnectionError when the connection ended before."""
        protocol = self.conn.protocol
        while not protocol.ready:
            if protocol.eof:  # with why, when the transport knows (a reset, a TLS error)
                raise ConnectionError(
                    "the source closed the connection before the body ended"
                ) from protocol.error
            await protocol.wait(self.timeout)
        return protocol.take()

    async def _line(self) -> bytes:
        """One CRLF-ended line of the body's framing, without its CRLF."""
        line = bytearray()
        while True:
            piece = await self._piece()
            text = bytes(piece[: MAX_LINE + 2 - len(line)])
            end = text.find(b"\n")
            if end >= 0:
                line += text[: end + 1]
                self.conn.protocol.untake(piece[end + 1 :])
                break
            line += text
            if len(line) > MAX_LINE:
                raise BadHTTP("a chunked body's line is too long")
        if not line.endswith(b"\r\n"):
            raise BadHTTP("a chunked body's line does not end with CRLF")
        return bytes(line[:-2])

    async def _exactly(self, n: int) -> AsyncIterator[memoryview]:
        while n:
            piece = await self._piece()
            if len(piece) > n:
                self.conn.protocol.untake(piece[n:])
                piece = piece[:n]
            n -= len(piece)
            yield piece

    # --- the head and the body -------------------------------------------------------------

    async def read_head(self) -> None:
        head = bytearray()
        while True:
            piece = await self._piece()
            text = bytes(piece[: MAX_HEAD + 4 - len(head)])
            end = (head[-3:] + text).find(b"\r\n\r\n")
            if end >= 0:
                used = end + 4 - len(head[-3:])
                head += text[:used]
                self.conn.protocol.untake(piece[used:])
                break
            head += text
            if len(head) > MAX_HEAD:
                raise BadHTTP("the response head is too large")
        self._parse_head(bytes(head))

    def _parse_head(self, head: bytes) -> None:
        seen = _Head()
        parser = httptools.HttpResponseParser(seen)
        try:
            parser.feed_data(head)
        except httptools.HttpParserError as exc:
            raise BadHTTP(f"not an HTTP response ({exc})") from exc
        self.status, self.headers = parser.get_status_code(), seen.headers
        if not seen.done or self.status < 200 or parser.get_http_version() not in ("1.0", "1.1"):
            raise BadHTTP(f"not an HTTP/1.x final response (status {self.status})")
        coding = (self.header(b"transfer-encoding") or "").strip().lower()
        length = self.header(b"content-length")
        if coding:
            if coding != "chunked":  # httptools refuses codings before chunked
                raise BadHTTP(f"transfer coding {coding!r} not supported")
            self._chunked = True
        elif self.status in (204, 304):
            self._length = 0
        elif length is not None:
            if not length.strip().isdigit():
                raise BadHTTP(f"bad Content-Length {length!r}")
            self._length = int(length)
        self.keep_alive = parser.should_keep_alive() and (self._chunked or self._length is not None)

    async def body(self) -> AsyncIterator[memoryview]:
        """The body's bytes, as they come; ``complete`` once all of it came."""
        if self._chunked:
            while size := _chunk_size(await self._line()):
                async for piece in self._exactly(size):
                    yield piece
                if await self._line():
                    raise BadHTTP("a chunk of the body is longer than its size says")
            trailers = 0  # ignored, but not without end
            while line := await self._line():
                trailers += len(line)
                if trailers > MAX_HEAD:
                    raise BadHTTP("the body's trailers are too large")
        elif self._length is not None:
            async for piece in self._exactly(self._length):
                yield piece
        else:  # delimited by the connection's end
            protocol = self.conn.protocol
            while protocol.ready or not protocol.eof:
                if protocol.ready:
                    yield protocol.take()
                else:
                    await protocol.wait(self.timeout)
        self.complete = True


def _chunk_size(line: bytes) -> int:
    text = line.split(b";", 1)[0].strip()
    if not text or len(text) > 16 or text.strip(b"0123456789abcdefABCDEF"):
        raise BadHTTP(f"bad chunk size line {line[:40]!r}")
    return int(text, 16)


class _Head:
    """httptools' callbacks for a response head."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.done = True


class Pool:
    """Connections per origin (scheme, host, port); at most ``max_connections`` in use."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        *,
        connect_timeout: float | None,
        read_timeout: float | None,
        pool_timeout: float | None,
        max_connections: int,
        max_idle: int,
    ) -> None:
        self.ssl_context = ssl_context
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.pool_timeout = pool_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self.max_idle = max_idle
        self._idle: collections.deque[Connection] = collections.deque()

    async def _connect(self, key: tuple) -> Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            transport, protocol = await loop.create_connection(
                _Protocol,
                host,
                port,
                ssl=self.ssl_context if scheme == "https" else None,
                server_hostname=host if scheme == "https" else None,
            )
        return Connection(key, transport, protocol)

    def _reuse(self, key: tuple) -> Connection | None:
        while True:
            conn = next((c for c in reversed(self._idle) if c.key == key), None)
            if conn is None:
                return None
            self._idle.remove(conn)
            if conn.usable() and not conn.protocol.ready:
                conn.reused = True
                return conn
            conn.close()

    @asynccontextmanager
    async def request(self, key: tuple, head: bytes, body: bytes) -> AsyncIterator[Response]:
        """Send ``head`` (request line and headers) and ``body`` to origin ``key``; the
        response once its head came. A reused connection the server closed meanwhile (it
        times idle ones out) is retried once on a new one."""
        async with asyncio.timeout(self.pool_timeout):
            await self._slots.acquire()
        conn = response = None
        try:
            for retry in (True, False):
                conn = self._reuse(key) or await self._connect(key)
                conn.transport.write(head + body)
                response = Response(conn, self.read_timeout)
                try:
                    await response.read_head()
                    break
                except ConnectionError:
                    conn.close()
                    if not (retry and conn.reused):
                        raise
            yield response
        finally:
            self._slots.release()
            if conn is not None:
                self._settle(conn, response)

    def _settle(self, conn: Connection, response: Response | None) -> None:
        if response is not None and response.complete and response.keep_alive and conn.usable():
            if conn.protocol.ready:  # bytes after the body: not a connection to trust
                conn.close()
                return
            self._idle.append(conn)
            while len(self._idle) > self.max_idle:
                self._idle.popleft().close()
        else:
            conn.close()

    async def aclose(self) -> None:
        while self._idle:
            self._idle.popleft().close()
