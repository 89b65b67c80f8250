"""The source API: one REST contract, served by a publisher for its root and by a subscriber
that republishes. Paths are relative to a root; ``{path}`` is a dataset path (with slashes).

    GET /v1/roots/{root}/manifest            Manifest JSON; ETag, If-None-Match -> 304
    GET /v1/roots/{root}/info/{path}         DatasetInfo JSON
    GET /v1/roots/{root}/chunk/{i}/{path}    raw compressed chunk i; digest in X-Caterva-Digest
    GET /v1/roots/{root}/chunks/{path}?i=..  many chunks, streamed as batch frames (below)
    POST /v1/roots/{root}/chunks             chunks of many datasets, one stream (below)
    GET /v1/roots/{root}/file/{path}         the whole stored file, streamed; Range supported
    GET /v1/stats                            counters (requests, chunks and bytes served)

Errors are ``{"error": {"code": ..., "message": ...}}`` with a 4xx/5xx status (caterva.errors).

A mirror names itself in ``X-Caterva-Via`` (after the mirrors the request came through) on
every request it makes upstream; a mirror that finds itself there answers 503 at once, so a
loop between mirrors fails one read instead of cycling.

A batch response (``application/x-caterva-chunks``) is a sequence of frames, one per requested
chunk in the order asked: a 28-byte header ``<u32 index><u64 length><16-byte digest>`` and then
``length`` bytes of the compressed chunk exactly as stored. A reader checks each header against
what it asked for before taking the bytes: the index it expects next, and a length of at most
the dataset's chunksize + MAX_OVERHEAD (no compressed chunk is bigger).
A stream that fails after it began (the dataset changed, its source went away) ends with an
error frame: index ``ERROR_INDEX``, and the error's JSON body (as an error response carries)
as its bytes; the reader raises it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator
from typing import TypeVar
from urllib.parse import quote

from caterva.errors import BadRequest, CatervaError, ProtocolError, from_payload
from caterva.protocol.metadata import DatasetInfo

API = "/v1"
# served by every service beside the source API (caterva.service): liveness, and a
# subscriber's login (POST an email and password, get a token)
HEALTH = f"{API}/health"
LOGIN = f"{API}/login"
DIGEST_HEADER = "X-Caterva-Digest"
VIA_HEADER = "X-Caterva-Via"
NEXT_HEADER = "X-Caterva-Next"  # a subscriber's listing: the cursor of the page after this one
BATCH_TYPE = "application/x-caterva-chunks"
FRAME = struct.Struct("<IQ16s")
MAX_BATCH = 4096  # chunk indices in one batch request
# blosc2.MAX_OVERHEAD: a compressed chunk is at most this much bigger than its data. Not
# imported from blosc2: the CLI reads batches too and must start without it (~0.3 s).
MAX_OVERHEAD = 32
NPY_MAX = 64 * 2**20  # the most bytes a subscriber decodes into one .npy answer
SEL_MAX = 4096  # characters of a selection in a query (32 items of three 19-digit bounds fit)
FIELD_MAX = 1024  # characters of a field name in a query
ERROR_INDEX = 0xFFFFFFFF  # the index of a frame that carries an error, not a chunk
ERROR_MAX = 1 << 16  # bytes an error frame may hold


def _q(path: str) -> str:
    return quote(path, safe="/")


def manifest(root: str) -> str:
    return f"{API}/roots/{root}/manifest"


def info(root: str, path: str) -> str:
    return f"{API}/roots/{root}/info/{_q(path)}"


def chunk(root: str, path: str, index: int) -> str:
    return f"{API}/roots/{root}/chunk/{index}/{_q(path)}"


def chunks(root: str, path: str) -> str:
    return f"{API}/roots/{root}/chunks/{_q(path)}"


def chunks_of_many(root: str) -> str:
    """POST {"datasets": [{"path": ..., "i": ...}, ...]}: the frames of each dataset in turn."""
    return f"{API}/roots/{root}/chunks"


def file(root: str, path: str) -> str:
    return f"{API}/roots/{root}/file/{_q(path)}"


def handoff(root: str, path: str) -> str:
    """POST: a ticket for the subscriber to write the file into one of this machine's
    (caterva.subscriber.handoff)."""
    return f"{API}/roots/{root}/handoff/{_q(path)}"


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak or strong, in a list, or ``*``)."""
    tags = [t.strip().removeprefix("W/").strip('"') for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def format_indices(indices: Iterable[int]) -> str:
    """[0, 1, 2, 3, 7, 9, 10] -> '0-3,7,9-10' (compact runs)."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(set(indices)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def parse_indices(text: str, limit: int = MAX_BATCH) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]; order kept, duplicates dropped; BadRequest when malformed."""
    seen: dict[int, None] = {}
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            start = int(lo)
            stop = int(hi) if sep else start
        except ValueError:
            raise BadRequest(f"invalid chunk list {text!r:.80}: use e.g. 0-7,12") from None
        if start < 0 or stop < start:
            raise BadRequest(f"invalid chunk range {part.strip()!r}")
        if stop - start + 1 + len(seen) > limit:
            raise BadRequest(f"too many chunks in one request (at most {limit})")
        seen.update(dict.fromkeys(range(start, stop + 1)))
    return list(seen)


D = TypeVar("D")  # a dataset of a batch: anything with .info (a DatasetInfo)


def expected_frames(
    wanted: Iterable[tuple[DatasetInfo, Iterable[int]]],
) -> Iterator[tuple[int, int]]:
    """(index, most bytes) of each frame of the batch that asks ``wanted`` (dataset info,
    chunk indices), in the order they come: each dataset's chunks ascending (as
    format_indices lists them)."""
    for info, indices in wanted:
        most = info.chunksize + MAX_OVERHEAD
        for index in sorted(set(indices)):
            yield index, most


def pieces(
    wanted: list[tuple[D, list[int]]], nbytes: int, nchunks: int | None = None
) -> list[tuple[list[tuple[D, list[int]]], int]]:
    """``wanted`` (dataset, chunk indices) cut into pieces of about ``nbytes`` compressed and
    at most ``nchunks`` chunks, as (parts, estimated bytes): small datasets share a piece, big
    ones are cut. How batches are cut into requests, windows and thread hops everywhere."""
    out: list[tuple[list[tuple[D, list[int]]], int]] = []
    parts: list[tuple[D, list[int]]] = []
    size = count = 0
    for dataset, indices in wanted:
        per_chunk = dataset.info.chunk_cbytes
        while indices:
            room = (nbytes - size) // per_chunk
            if nchunks is not None:
                room = min(room, nchunks - count)
            if room <= 0 and parts:
                out.append((parts, size))
                parts, size, count = [], 0, 0
                continue
            room = max(room, 1)  # a chunk bigger than a piece goes alone
            parts.append((dataset, indices[:room]))
            size += per_chunk * len(indices[:room])
            count += len(indices[:room])
            indices = indices[room:]
    if parts:
        out.append((parts, size))
    return out


def frame_header(index: int, data: bytes | memoryview, digest_hex: str) -> bytes:
    return FRAME.pack(index, len(data), bytes.fromhex(digest_hex))


def error_frame(error: CatervaError) -> bytes:
    """The frame that ends a failing stream with ``error``."""
    body = json.dumps(error.to_payload()).encode()
    return FRAME.pack(ERROR_INDEX, len(body), bytes(16)) + body


def frame_pieces(
    chunks: Iterable[tuple[int, bytes, str]], alone: int = 1 << 18, most: int = 1 << 20
) -> Iterator[bytes]:
    """The frames of (index, data, digest) as few buffers as possible, copying little: small
    frames are joined (up to about ``most`` bytes), a chunk of ``alone`` bytes or more is
    passed on as itself rather than copied behind its header."""
    parts: list[bytes] = []
    size = 0
    for index, data, digest in chunks:
        parts.append(frame_header(index, data, digest))
        if len(data) >= alone:
            yield b"".join(parts)
            yield data
            parts, size = [], 0
            continue
        parts.append(data)
        size += len(data)
        if size >= most:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        yield b"".join(parts)


class BatchReader:
    """Incremental parser of a batch response: feed bytes, get (index, digest, data) back.

    ``expected`` is (index, most bytes) of each frame that may come, in order (see
    expected_frames): a header that names another chunk, or more bytes than its chunk can
    have, is a ProtocolError before any of its bytes are kept, so a peer cannot make the
    reader hold more than one chunk. A batch may end early (a source cuts it when a file
    changes): the reader asks again for what is missing.

    A chunk's bytes are kept as views of the pieces fed and joined once when complete: no
    buffer is grown and then cut from the front, which copies big chunks again and again.
    With ``joined=False`` they are not joined at all: each chunk comes as its list of views,
    for a writer that hands them to the kernel as they are (layout.write_all) instead of
    copying every chunk into a fresh buffer first.
    """

    def __init__(self, expected: Iterable[tuple[int, int]], joined: bool = True) -> None:
        self._expected = iter(expected)
        self._joined = joined
        self._head = b""  # a frame header split across pieces
        self._need: tuple[int, int, str] | None = None
        self._parts: list[memoryview] = []
        self._got = 0

    def feed(self, data: bytes) -> Iterator[tuple[int, str, bytes | list[memoryview]]]:
        view = memoryview(data)
        pos, end = 0, len(data)
        while pos < end or (self._need is not None and self._need[1] == 0):
            if self._need is None:
                take = min(FRAME.size - len(self._head), end - pos)
                self._head += data[pos : pos + take]
                pos += take
                if len(self._head) < FRAME.size:
                    return
                index, length, digest = FRAME.unpack(self._head)
                if index != ERROR_INDEX:
                    self._check(index, length)
                elif length > ERROR_MAX:
                    raise ProtocolError("an error frame too large to be one")
                self._head = b""
                self._need = (index, length, digest.hex())
            index, length, digest = self._need
            take = min(length - self._got, end - pos)
            if take:
                self._parts.append(view[pos : pos + take])
                self._got += take
                pos += take
            if self._got < length:
                return
            parts, self._parts, self._got, self._need = self._parts, [], 0, None
            if index == ERROR_INDEX:
                raise _error_of(b"".join(parts))
            yield index, digest, b"".join(parts) if self._joined else parts

    def _check(self, index: int, length: int) -> None:
        asked, most = next(self._expected, (None, 0))
        if asked is None:
            raise ProtocolError(f"the batch sent chunk {index} after every chunk asked for")
        if index != asked:
            raise ProtocolError(f"the batch sent chunk {index} where chunk {asked} was due")
        if length > most:
            raise ProtocolError(
                f"the batch announced {length} bytes for chunk {index}, more "
                f"than a chunk of its dataset can have ({most})"
            )

    def close(self) -> None:
        if self._head or self._need is not None:
            raise ProtocolError("batch response ended in the middle of a chunk")


def _error_of(payload: bytes) -> CatervaError:
    try:
        return from_payload(json.loads(payload), 500)
    except ValueError:
        return ProtocolError("batch response ended with an unreadable error frame")
