"""A batch server that misbehaves as told, for the receive paths of chunk batches (the
subscriber's, caterva/subscriber/bulk.py; the client's, caterva/client/lean.py): real uvicorn on
loopback, the dataset path saying how to answer. Datasets are ``make_info(mode)``: NCHUNKS
chunks of CHUNK bytes.

Modes: ``error`` (404 with a caterva error), ``redirect`` (302 to ``chunked``), ``length``
(Content-Length), ``cut-mid-frame`` (a Content-Length for a body 100 bytes short), ``silent``
(1000 bytes, then nothing), ``drop-mid-frame`` (the connection dropped halfway), ``bad-frame``
(a frame of a chunk not asked for), ``wrong-bytes`` (chunk 1 not matching its digest);
anything else: a chunked body, in pieces that split frames and their headers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs

import uvicorn

from caterva.errors import NotFound
from caterva.protocol import rest
from caterva.protocol.metadata import DatasetInfo
from tests.unit.test_cache import make_info as cache_info

NCHUNKS, CHUNK = 6, 100_000
SEEN: list[tuple[str, int, bool]] = []  # (mode, client port, through httpx) of each request


def make_info(path: str) -> tuple[DatasetInfo, list[bytes]]:
    return cache_info(path, NCHUNKS, chunk=CHUNK)


def frames(mode: str, indices: list[int]) -> bytes:
    info, chunks = make_info(mode)
    out = []
    for i in indices:
        data = chunks[i]
        if mode == "wrong-bytes" and i == 1:
            data = b"x" + data[1:]
        sent = 5 if mode == "bad-frame" and i == 1 else i
        out.append(rest.FRAME.pack(sent, len(data), bytes.fromhex(info.digests[i])) + data)
    return b"".join(out)


async def app(scope, receive, send):
    mode = scope["path"].rsplit("/", 1)[-1]
    httpx_sent = any(name == b"user-agent" for name, _ in scope["headers"])
    SEEN.append((mode, scope["client"][1], httpx_sent))
    indices = rest.parse_indices(parse_qs(scope["query_string"].decode())["i"][0])
    body = frames(mode, indices) * (40 if mode == "bad-frame" else 1)
    headers = [(b"content-type", rest.BATCH_TYPE.encode())]
    if mode == "error":
        error = json.dumps(NotFound("no dataset 'error'").to_payload()).encode()
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": error})
        return
    if mode == "redirect":
        location = (b"location", scope["path"].replace("redirect", "chunked").encode())
        await send({"type": "http.response.start", "status": 302, "headers": [location]})
        await send({"type": "http.response.body", "body": b""})
        return
    if mode in ("length", "cut-mid-frame"):
        body = body[:-100] if mode == "cut-mid-frame" else body
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if mode == "silent":
        await send({"type": "http.response.body", "body": body[:1000], "more_body": True})
        await asyncio.Event().wait()
    for at in range(0, len(body), 7777):  # pieces that split frames and their headers
        if mode == "drop-mid-frame" and at > len(body) // 2:
            raise RuntimeError("the server goes away")  # uvicorn drops the connection
        await send({"type": "http.response.body", "body": body[at : at + 7777], "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def listen(target) -> str:
    """A listening socket on loopback handed to ``target`` in a thread (connections wait in
    its backlog until accepted: no readiness wait); its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    threading.Thread(target=target, args=(sock,), daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def running() -> Iterator[str]:
    """``app`` under uvicorn, for a module-scoped fixture (yield from it): its URL."""
    config = uvicorn.Config(app, lifespan="off", log_level="critical", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    yield listen(lambda sock: asyncio.run(server.serve([sock])))
    server.should_exit = True
