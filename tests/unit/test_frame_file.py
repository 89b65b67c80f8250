"""Downloads of a fully cached Blosc2 dataset as the subscriber's /file frame
(client/framefile.py), against an in-memory fake (httpx.MockTransport): the file equals the
one the chunk path writes, and every way the frame can be wrong fails the download and
leaves no file, from Client and AsyncClient alike."""

from __future__ import annotations

import asyncio

import blosc2
import httpx
import numpy as np
import pytest

from caterva.client import AsyncClient, Client
from caterva.errors import DatasetChanged, DigestMismatch, ProtocolError, Unavailable
from caterva.protocol import rest
from caterva.protocol.layout import describe, frame_bounds

URL = "http://sub.test"


class FakeFiles:
    """A subscriber holding one dataset whole: its info, its chunks, its /file frame."""

    def __init__(self, array: np.ndarray, **layout) -> None:
        self.nd = blosc2.asarray(array, **layout)
        self.nd.schunk.vlmeta["units"] = "m"
        self.array = array
        self.info = describe(self.nd, "a/x.b2nd", "b2nd", size=0, mtime=0.0)
        schunk = self.nd.schunk
        self.chunks = [schunk.get_chunk(i) for i in range(schunk.nchunks)]
        head, tail = frame_bounds(self.info, [len(c) for c in self.chunks])
        self.frame = head + b"".join(self.chunks) + tail
        self.cached = len(self.chunks)  # chunks the subscriber says it holds
        self.body = self.frame  # what /file sends (tests spoil it)
        self.length: int | None = None  # the Content-Length sent (None: the body's)
        self.etag = f'"{self.info.etag}"'
        self.cut_at: int | None = None  # the connection drops after this many bytes
        self.file_error: dict | None = None  # /file answers this error instead
        self.files = 0  # /file requests

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == rest.info("r", self.info.path):
            body = {**self.info.to_dict(), "cached": {"chunks": self.cached, "bytes": 0}}
            return httpx.Response(200, json=body)
        if path == rest.file("r", self.info.path):
            self.files += 1
            if self.file_error is not None:
                return httpx.Response(501, json={"error": self.file_error})
            headers = {"ETag": self.etag, "Content-Length": str(self.length or len(self.body))}
            return httpx.Response(200, headers=headers, stream=Stream(self.body, self.cut_at))
        if path == rest.chunks("r", self.info.path):
            wanted = rest.parse_indices(request.url.params["i"])
            frames = b"".join(
                rest.FRAME.pack(i, len(self.chunks[i]), bytes.fromhex(self.info.digests[i]))
                + self.chunks[i]
                for i in wanted
            )
            return httpx.Response(200, content=frames)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": path}})


class Stream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body sent in 1000-byte pieces, dropped (as a reset connection) after ``cut_at``."""

    def __init__(self, body: bytes, cut_at: int | None) -> None:
        self.body, self.cut_at = body, cut_at

    def pieces(self):
        stop = len(self.body) if self.cut_at is None else self.cut_at
        for i in range(0, stop, 1000):
            yield self.body[i : min(i + 1000, stop)]
        if self.cut_at is not None:
            raise httpx.RemoteProtocolError("peer closed connection")

    def __iter__(self):
        yield from self.pieces()

    async def __aiter__(self):
        for piece in self.pieces():
            yield piece


@pytest.fixture
def fake():
    rng = np.random.default_rng(3)
    return FakeFiles(rng.normal(size=(40, 30)), chunks=(10, 30), blocks=(5, 10))


def download(fake: FakeFiles, dest, aio: bool = False):
    transport = httpx.MockTransport(fake.handle)
    if not aio:
        with Client(URL, transport=transport) as client:
            return client.download(f"r/{fake.info.path}", dest)

    async def run():
        async with AsyncClient(URL, transport=transport) as client:
            return await client.download(f"r/{fake.info.path}", dest)

    return asyncio.run(run())


@pytest.mark.parametrize("aio", [False, True])
def test_the_file_path_writes_what_the_chunk_path_writes(fake, tmp_path, aio):
    via_file = download(fake, tmp_path / "file.b2nd", aio)
    assert fake.files == 1
    fake.cached = 0  # not whole: the chunks are asked for and framed here
    via_chunks = download(fake, tmp_path / "chunks.b2nd", aio)
    assert fake.files == 1
    assert via_file.read_bytes() == via_chunks.read_bytes() == fake.frame
    got = blosc2.open(str(via_file), mode="r")
    assert np.array_equal(got[...], fake.array) and got.schunk.vlmeta["units"] == "m"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunks.b2nd", "file.b2nd"]


def spoil_chunk(fake: FakeFiles) -> None:
    body = bytearray(fake.frame)
    body[fake.frame.index(fake.chunks[2]) + 40] ^= 0xFF
    fake.body = bytes(body)


def spoil_chunk_length(fake: FakeFiles) -> None:
    body = bytearray(fake.frame)
    body[fake.frame.index(fake.chunks[1]) + 12 : fake.frame.index(fake.chunks[1]) + 16] = (
        10**8
    ).to_bytes(4, "little")
    fake.body = bytes(body)


def spoil_header(fake: FakeFiles) -> None:
    fake.body = fake.frame[:3] + b"X" + fake.frame[4:]


def spoil_sizes(fake: FakeFiles) -> None:  # the header's uncompressed size, off by one
    body = bytearray(fake.frame)
    body[37] ^= 1
    fake.body = bytes(body)


def short_body(fake: FakeFiles) -> None:  # a length promised, fewer bytes sent and ended
    fake.length = len(fake.frame) + 10


def long_body(fake: FakeFiles) -> None:
    fake.body = fake.frame + b"extra"
    fake.length = len(fake.frame)


def cut(fake: FakeFiles) -> None:
    fake.cut_at = len(fake.frame) // 2


def other_version(fake: FakeFiles) -> None:
    fake.etag = '"another"'


@pytest.mark.parametrize(
    "spoil, error",
    [
        (spoil_chunk, DigestMismatch),
        (spoil_chunk_length, ProtocolError),
        (spoil_header, ProtocolError),
        (spoil_sizes, ProtocolError),
        (short_body, ProtocolError),
        (long_body, ProtocolError),
        (cut, Unavailable),
        (other_version, DatasetChanged),
    ],
)
@pytest.mark.parametrize("aio", [False, True])
def test_a_wrong_frame_fails_and_leaves_no_file(fake, tmp_path, spoil, error, aio):
    spoil(fake)
    with pytest.raises(error):
        download(fake, tmp_path / "x.b2nd", aio)
    assert list(tmp_path.iterdir()) == []


def test_a_layout_the_subscriber_cannot_frame_comes_as_chunks(fake, tmp_path):
    fake.file_error = {"code": "not_supported", "message": "download it with the client"}
    got = download(fake, tmp_path / "x.b2nd")
    assert fake.files == 1 and got.read_bytes() == fake.frame
