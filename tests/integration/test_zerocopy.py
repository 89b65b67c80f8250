"""Zero-copy sending (caterva.service.zerocopy) against the buffered path: one StreamedFile of
bytes and FileParts of real files, served by uvicorn on loopback with the extension (sendfile)
and without it (the parts read), answers every range with the same bytes."""

from __future__ import annotations

import asyncio
import os
import threading

import httpx
import pytest
import uvicorn

from caterva.service import zerocopy
from caterva.service.ranges import FilePart, StreamedFile
from tests.conftest import free_port


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A file made of: 1000 bytes in memory, a 3 MiB file, 7 bytes, a 100 kB file, a tail."""
    tmp = tmp_path_factory.mktemp("zerocopy")
    pieces: list[bytes | str] = [os.urandom(1000), "a", b"seven!!", "b", os.urandom(300)]
    for name, size in (("a", 3 << 20), ("b", 100_000)):
        (tmp / name).write_bytes(os.urandom(size))
    return [p if isinstance(p, bytes) else tmp / p for p in pieces]


def app_of(parts, served: list[str]):
    blobs = [p if isinstance(p, bytes) else p.read_bytes() for p in parts]
    size = sum(map(len, blobs))

    async def read(start: int, stop: int):
        offset = 0
        for part, blob in zip(parts, blobs):
            lo, hi = max(start - offset, 0), min(stop - offset, len(blob))
            offset += len(blob)
            if lo >= hi:
                continue
            if isinstance(part, bytes):
                yield blob[lo:hi]
            else:
                yield FilePart(open(part, "rb"), lo, hi - lo)  # noqa: SIM115 (the sender closes)

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            return await send({"type": "lifespan.shutdown.complete"})
        served.append("zerocopy" if zerocopy.ZEROCOPY in scope.get("extensions", {}) else "read")
        await StreamedFile(size, read, etag='"e"', filename="f.bin")(scope, receive, send)

    return app, b"".join(blobs)


@pytest.fixture(scope="module", params=["zerocopy", "read"])
def served(request, parts):
    """(url, the whole file, how each request was served) for one way of sending."""
    seen: list[str] = []
    app, whole = app_of(parts, seen)
    http = zerocopy.protocol() if request.param == "zerocopy" else "httptools"
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, http=http, log_config=None)
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    with httpx.Client(timeout=10) as client:
        for _ in range(500):  # until it listens
            try:
                client.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.ConnectError:
                threading.Event().wait(0.01)
    seen.clear()
    yield f"http://127.0.0.1:{port}/", whole, seen, request.param
    server.should_exit = True
    thread.join(10)


RANGES = [None, "bytes=0-0", "bytes=500-1500", "bytes=1000-", "bytes=-301", "bytes=1007-3146744"]


@pytest.mark.parametrize("span", RANGES)
def test_every_range_is_the_same_bytes_either_way(served, span):
    url, whole, seen, way = served
    headers = {"Range": span} if span else {}
    r = httpx.get(url, headers=headers, timeout=10)
    if span is None:
        expected = whole
    else:
        first, _, last = span.removeprefix("bytes=").partition("-")
        if not first:
            expected = whole[-int(last) :]
        else:
            expected = whole[int(first) : int(last) + 1 if last else None]
    assert r.status_code == (206 if span else 200)
    assert r.content == expected and int(r.headers["content-length"]) == len(expected)
    assert seen[-1] == way  # the extension was offered (or not) as meant


def test_a_client_gone_midway_leaves_the_server_serving(served):
    url, whole, _, _ = served
    with httpx.stream("GET", url, timeout=10) as r:
        next(r.iter_raw(1000))
    assert httpx.get(url, timeout=10).content == whole
