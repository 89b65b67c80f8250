"""Downloads on this machine: the subscriber writes a dataset's file straight into the client's.

A client whose subscriber is on its own machine asks ``POST .../handoff/{path}`` (authorized
like any route) and gets a ticket, the file's size and ETag, and the name of this subscriber's
socket (abstract AF_UNIX, SOCK_SEQPACKET: no file to leave behind, no path length limit). It
connects, sends the ticket with the descriptor of the file it opened for writing, and the
subscriber writes the very bytes ``/file`` would send (files.py): the cached chunks read from
the cache's files into a small reused buffer and written into the client's, so no byte crosses
a socket. It reports progress as it goes and ends with the size written or the error.

The ticket is the capability: 128 random bits, one use, one version of one dataset, given only
in the answer to the authorized request, void after TICKET_TTL. A connection gets one message
of at most MAX_REQUEST bytes with one descriptor, which must be a regular file open for writing
(not appending); anything else gets an error answer, and descriptors received are closed.
The bytes come from the subscriber's cache, each chunk checked against its digest when it
arrived, and never leave the machine: the client checks sizes and counts, not digests again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import socket
import stat
import time
from collections import OrderedDict, deque
from typing import Any

from caterva.errors import BadRequest, CatervaError, NotFound, ProtocolError
from caterva.service.ranges import FilePart, StreamedFile

log = logging.getLogger("caterva.handoff")

TICKET_TTL = 30.0  # seconds from the answer to the connection
MAX_TICKETS = 1024  # tickets not yet used; the oldest go first
MAX_REQUEST = 4096  # the ticket message
MAX_CONNECTIONS = 64  # connections being served at once; more are closed unanswered
REQUEST_WAIT = 5.0  # seconds a connection may take to send its ticket
FLUSH_BYTES = 8 << 20  # written per worker-thread hop, and between progress messages
COPY_BYTES = 1 << 20  # a write's buffer: read into, written from (see _write_all)
SPARE_BUFFERS = 2  # kept for the next handoff's two writes: a new buffer costs a fault a page
_spare: list[memoryview] = []


class Handoff:
    """The socket, its tickets and the connections being served (started and stopped by the
    app's lifespan)."""

    def __init__(self) -> None:
        self.name = f"caterva-{secrets.token_hex(8)}"  # abstract: bound as "\0" + name
        self._tickets: OrderedDict[str, tuple[float, StreamedFile]] = OrderedDict()
        self._listener: socket.socket | None = None
        self._serving: asyncio.Task | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        listener.bind("\0" + self.name)
        listener.listen(MAX_CONNECTIONS)
        listener.setblocking(False)
        self._listener = listener
        self._serving = asyncio.create_task(self._serve(), name="handoff")

    async def stop(self) -> None:
        tasks = [t for t in (self._serving, *self._connections) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()

    def ticket(self, file: StreamedFile) -> str:
        """A one-use ticket for ``file`` (not started: nothing is open until it is used)."""
        now = time.monotonic()
        while self._tickets and (
            len(self._tickets) >= MAX_TICKETS or next(iter(self._tickets.values()))[0] < now
        ):
            self._tickets.popitem(last=False)
        ticket = secrets.token_hex(16)
        self._tickets[ticket] = (now + TICKET_TTL, file)
        return ticket

    def _redeem(self, message: bytes) -> StreamedFile:
        try:
            ticket = json.loads(message)["ticket"]
            until, file = self._tickets.pop(ticket)
        except (ValueError, KeyError, TypeError):
            raise NotFound("no such ticket: ask for another") from None
        if until < time.monotonic():
            raise NotFound("the ticket expired: ask for another")
        return file

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            connection, _ = await loop.sock_accept(self._listener)
            if len(self._connections) >= MAX_CONNECTIONS:
                connection.close()
                continue
            task = asyncio.create_task(self._one(connection))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _one(self, connection: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        fds: list[int] = []
        with connection:
            connection.setblocking(False)
            try:
                async with asyncio.timeout(REQUEST_WAIT):
                    message, fds = await _receive(loop, connection)
                file = self._redeem(message)
                if len(fds) != 1:
                    raise BadRequest("send the ticket with one file descriptor")
                _check_target(fds[0])
                size = await _write(file, fds[0], connection)
                reply: dict[str, Any] = {"size": size}
            except CatervaError as exc:
                reply = {"status": exc.status, **exc.to_payload()}
            except TimeoutError:
                return
            except OSError as exc:  # the target could not be written (disk full, ...)
                log.warning("handoff failed: %s", exc)
                failed = CatervaError(f"cannot write the file: {exc}")
                reply = {"status": failed.status, **failed.to_payload()}
            finally:
                for fd in fds:
                    os.close(fd)
            with contextlib.suppress(OSError):
                await loop.sock_sendall(connection, json.dumps(reply).encode())


async def _receive(loop: asyncio.AbstractEventLoop, connection: socket.socket):
    """The ticket message and the descriptors that came with it."""
    got: asyncio.Future = loop.create_future()

    def ready() -> None:
        try:
            message, fds, flags, _ = socket.recv_fds(
                connection, MAX_REQUEST, 1, socket.MSG_CMSG_CLOEXEC | socket.MSG_DONTWAIT
            )
        except BlockingIOError:
            return
        except OSError as exc:
            got.done() or got.set_exception(exc)
        else:
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):  # too long, or too many fds
                for fd in fds:
                    os.close(fd)
                message, fds = b"", []
            got.done() or got.set_result((message, fds))

    loop.add_reader(connection.fileno(), ready)
    try:
        return await got
    finally:
        loop.remove_reader(connection.fileno())


def _check_target(fd: int) -> None:
    mode = os.fstat(fd).st_mode
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    writable = flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    if not stat.S_ISREG(mode) or not writable or flags & os.O_APPEND:
        raise BadRequest("the descriptor must be a regular file open for writing, not appending")


async def _write(file: StreamedFile, fd: int, connection: socket.socket) -> int:
    """``file`` into ``fd`` from its start, FLUSH_BYTES at a time in worker threads; stops if
    the client hangs up. Two writes are under way at once: while one is copied, the next
    window is read and its write starts. Taking turns, each window waited ~1 ms for its thread
    to start (the event loop held the GIL, reading the next): a third of a warm download."""
    pieces = file.read(0, file.size)
    at = done = pending = 0
    batch: list[bytes | FilePart] = []
    writing: deque[asyncio.Future] = deque()
    try:
        async for piece in pieces:
            batch.append(piece)
            pending += piece.count if isinstance(piece, FilePart) else len(piece)
            if pending >= FLUSH_BYTES:
                writing.append(_start(batch, fd, at, connection))
                batch, at, pending = [], at + pending, 0
                if len(writing) > 1:
                    done = await _finished(writing, connection)
        if batch:
            writing.append(_start(batch, fd, at, connection))
            batch = []
        while writing:
            done = await _finished(writing, connection)
    finally:
        _close(batch)  # what was taken and not written
        if writing:  # failed or cancelled: a thread cannot be stopped, and fd is closed next
            await asyncio.wait(writing)
            for work in writing:  # their errors are the first one's consequences
                work.exception()
        await pieces.aclose()  # what was opened and not taken
    if done != file.size:
        raise ProtocolError(f"{file.filename}: wrote {done} of {file.size} bytes")
    return done


def _start(batch: list[bytes | FilePart], fd: int, at: int, connection: socket.socket):
    """``batch`` written at ``at`` in a worker thread, which closes its files (when the client
    went away instead, the caller closes them)."""
    if _hung_up(connection):
        raise ProtocolError("the client went away")
    return asyncio.ensure_future(asyncio.to_thread(_write_all, batch, fd, at))


async def _finished(writing: deque[asyncio.Future], connection: socket.socket) -> int:
    """Where the file ends once the first of ``writing`` is done (then taken off it); the
    client is told."""
    at = await asyncio.shield(writing[0])  # cancelled, the caller still waits for the thread
    writing.popleft()
    with contextlib.suppress(OSError):  # progress is a courtesy: never wait for it
        connection.send(json.dumps({"written": at}).encode(), socket.MSG_DONTWAIT)
    return at


def _write_all(batch: list[bytes | FilePart], fd: int, at: int) -> int:
    """``batch`` written at ``at``, through a buffer of COPY_BYTES: a cached chunk is read
    into it, and it is written whenever full. Two writes at once take 40 ms for a 179 MB cube
    of 512 chunk files, against 61 ms for copy_file_range (a call per file: on ext4 the
    kernel copies through a pipe, a page at a time), the buffer still in the CPU's cache when
    it is written (benchmarks/copyfloor.py)."""
    try:
        buffer = _spare.pop()
    except IndexError:  # none spare (a write in another thread may have taken the last)
        buffer = memoryview(bytearray(COPY_BYTES))
    filled = 0
    try:
        for piece in batch:
            data = None if isinstance(piece, FilePart) else memoryview(piece)
            done, size = 0, piece.count if data is None else len(data)
            while done < size:
                room = buffer[filled : filled + min(size - done, len(buffer) - filled)]
                if data is not None:
                    room[:] = data[done : done + len(room)]
                    n = len(room)
                elif not (n := os.preadv(piece.file.fileno(), [room], piece.offset + done)):
                    raise ProtocolError(f"{piece.file.name} is shorter than expected")
                filled, done = filled + n, done + n
                if filled == len(buffer):
                    at, filled = _pwrite(fd, buffer, at), 0
        return _pwrite(fd, buffer[:filled], at)
    finally:
        _close(batch)
        if len(_spare) < SPARE_BUFFERS:
            _spare.append(buffer)


def _pwrite(fd: int, data: memoryview, at: int) -> int:
    """``data`` written at ``at``; returns where it ends."""
    while data:
        n = os.pwrite(fd, data, at)
        data, at = data[n:], at + n
    return at


def _hung_up(connection: socket.socket) -> bool:
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _close(batch: list[bytes | FilePart]) -> None:
    for piece in batch:
        if isinstance(piece, FilePart):
            piece.file.close()
