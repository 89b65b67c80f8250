"""The ``/file`` routes: a whole file, or the byte range a ``Range`` header asks for.

    RangeFileResponse   a file on disk (the publisher): Starlette's FileResponse, its Range
                        errors made caterva JSON, cut short when the file changes while sent
    StreamedFile        a file made as it is sent (the subscriber): its size is known up front,
                        ``read(start, stop)`` yields its bytes (or FileParts of files on
                        disk, sent zero-copy where the server can); one range, or the whole

Both answer a malformed Range with 400 bad_request and one past the end with 416
range_not_satisfiable (and ``Content-Range: bytes */SIZE``), as JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote

from fastapi.responses import FileResponse, StreamingResponse
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from caterva.errors import CatervaError, ProtocolError
from caterva.service.zerocopy import ZEROCOPY

log = logging.getLogger("caterva.http")

# the request headers a /file route reads itself (FastAPI cannot see them), for its OpenAPI
RANGE_HEADERS = {
    "parameters": [
        {
            "name": "Range",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "`bytes=FIRST-LAST`, `bytes=FIRST-` or `bytes=-COUNT`.",
        },
        {
            "name": "If-Range",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Honour `Range` only while the file's ETag is this one.",
        },
    ]
}
MALFORMED = {"error": {"code": "bad_request", "message": "malformed Range header"}}
BEYOND = {
    "error": {"code": "range_not_satisfiable", "message": "the requested range is not satisfiable"}
}


class RangeFileResponse(FileResponse):
    """A FileResponse (streamed, Range-aware) whose Range errors are caterva JSON too.

    Starlette answers a malformed or unsatisfiable Range with a plain-text 400/416; we keep
    its parsing and swap that body, so the rule "errors are JSON" holds on every path.

    ``unchanged()`` is asked after each piece is read, before it is sent: when the file has
    changed since the response began, the rest is not sent and the connection is closed, so a
    reader gets a short, failed response, never a whole one that mixes two versions.
    """

    unchanged: Callable[[], bool] | None = None  # set on an instance (FastAPI inspects __init__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        replaced = cut = False

        async def json_errors(message: Message) -> None:
            nonlocal replaced, cut
            if (
                message["type"] == "http.response.body"
                and self.unchanged
                and (cut or not self.unchanged())
            ):
                if not cut:
                    log.info("%s changed while being sent: response cut", self.path)
                cut = True
                return
            if message["type"] == "http.response.start" and message["status"] in (400, 416):
                replaced = True
                keep = [(k, v) for k, v in message["headers"] if k.lower() == b"content-range"]
                await _send_json(
                    send, message["status"], BEYOND if message["status"] == 416 else MALFORMED, keep
                )
                return
            if not replaced:
                await send(message)

        await super().__call__(scope, receive, json_errors)


async def _send_json(
    send: Send, status: int, body: dict, headers: list[tuple[bytes, bytes]]
) -> None:
    data = json.dumps(body).encode()
    headers = [
        *headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class Unsatisfiable(Exception):
    pass


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, stop) of the one byte range ``header`` asks of a file of ``size`` bytes; None
    for several ranges (the whole file is sent: RFC 9110 lets a server ignore Range). Raises
    ValueError when malformed, Unsatisfiable when past the end."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        raise ValueError(header)
    if "," in spec:
        return None
    first, dash, last = (part.strip() for part in spec.strip().partition("-"))
    if not dash or not (first or last) or not all(p.isdigit() for p in (first, last) if p):
        raise ValueError(header)
    if not first:  # the last N bytes
        if int(last) == 0:
            raise Unsatisfiable
        return max(size - int(last), 0), size
    start = int(first)
    if last and int(last) < start:
        raise ValueError(header)
    if start >= size:
        raise Unsatisfiable
    return start, min(int(last) + 1, size) if last else size


@dataclass(frozen=True)
class FilePart:
    """Bytes [offset, offset + count) of an open file, sent as they are: by the kernel where
    the server can (caterva.service.zerocopy), else read. Whoever sends it closes the file."""

    file: BinaryIO
    offset: int
    count: int

    def read(self) -> bytes:
        data = os.pread(self.file.fileno(), self.count, self.offset)
        if len(data) != self.count:  # the file is shorter than it was said to be
            raise ProtocolError(f"{self.file.name} is shorter than expected")
        return data


class StreamedFile(StreamingResponse):
    """A file of ``size`` bytes made as it is sent: ``read(start, stop)`` yields bytes
    [start, stop). Honours one byte range (206) and ``If-Range`` (the ETag given).

    A caterva error before the first piece is its JSON answer; one while the bytes flow (the
    dataset's version gone from every source) is logged and the response cut short: the
    reader sees a failed transfer, never a whole one.
    """

    def __init__(
        self,
        size: int,
        read: Callable[[int, int], AsyncIterator[bytes | FilePart]],
        *,
        etag: str,
        filename: str,
        media_type: str = "application/octet-stream",
    ) -> None:
        name = (
            f'filename="{filename}"'
            if quote(filename) == filename
            else f"filename*=utf-8''{quote(filename)}"
        )
        super().__init__(
            iter(()),
            media_type=media_type,
            headers={
                "Accept-Ranges": "bytes",
                "ETag": etag,
                "Content-Disposition": f"attachment; {name}",
            },
        )
        self.size, self.read, self.filename = size, read, filename
        self.zerocopy = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.zerocopy = ZEROCOPY in scope.get("extensions", {})
        asked = Headers(scope=scope)
        start, stop = 0, self.size
        if "range" in asked and asked.get("if-range", self.headers["etag"]) == self.headers["etag"]:
            try:
                span = byte_range(asked["range"], self.size)
            except ValueError:
                return await _send_json(send, 400, MALFORMED, [])
            except Unsatisfiable:
                return await _send_json(
                    send, 416, BEYOND, [(b"content-range", f"bytes */{self.size}".encode())]
                )
            if span is not None:
                start, stop = span
                self.status_code = 206
                self.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{self.size}"
        pieces = self.read(start, stop)
        try:  # what fails before the first byte (no source) is an error answer
            first = await anext(pieces, b"")
        except CatervaError as exc:
            return await _send_json(send, exc.status, exc.to_payload(), [])
        self.headers["Content-Length"] = str(stop - start)
        cut = False

        async def body() -> AsyncIterator[bytes | FilePart]:
            nonlocal cut
            try:
                yield first
                async for piece in pieces:
                    yield piece
            except CatervaError as exc:
                log.warning("%s: response cut: %s", self.filename, exc)
                cut = True

        async def until_cut(message: Message) -> None:
            if not cut:  # nor the end of the body: the connection closes short
                await send(message)

        self.body_iterator = body()
        await super().__call__(scope, receive, until_cut)

    async def stream_response(self, send: Send) -> None:
        """StreamingResponse's, but a FilePart goes as a zero-copy send, or is read."""
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        async for piece in self.body_iterator:
            if isinstance(piece, FilePart):
                with piece.file:
                    if self.zerocopy:
                        message = {"file": piece.file, "offset": piece.offset, "count": piece.count}
                        await send({"type": ZEROCOPY, **message, "more_body": True})
                        continue
                    piece = await asyncio.to_thread(piece.read)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
