"""The source API: one REST contract, served by a publisher for its root and by a subscriber
that republishes. Paths are relative to a root; ``{path}`` is a dataset path (with slashes).

    GET /v1/roots/{root}/manifest            Manifest JSON; ETag, If-None-Match -> 304
    GET /v1/roots/{root}/info/{path}         DatasetInfo JSON
    GET /v1/roots/{root}/chunk/{i}/{path}    raw compressed chunk i; digest in X-Caterva-Digest
    GET /v1/roots/{root}/chunks/{path}?i=..  many chunks, streamed as batch frames (below)
    GET /v1/roots/{root}/file/{path}         the whole stored file, streamed; Range supported
    GET /v1/stats                            counters (requests, chunks and bytes served)

Errors are ``{"error": {"code": ..., "message": ...}}`` with a 4xx/5xx status (caterva.errors).

A batch response (``application/x-caterva-chunks``) is a sequence of frames, one per requested
chunk in the order asked: a 28-byte header ``<u32 index><u64 length><16-byte digest>`` and then
``length`` bytes of the compressed chunk exactly as stored.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from urllib.parse import quote

from caterva.errors import BadRequest, ProtocolError

API = "/v1"
DIGEST_HEADER = "X-Caterva-Digest"
BATCH_TYPE = "application/x-caterva-chunks"
FRAME = struct.Struct("<IQ16s")
MAX_BATCH = 4096  # chunk indices in one batch request


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


def file(root: str, path: str) -> str:
    return f"{API}/roots/{root}/file/{_q(path)}"


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


def frame_header(index: int, data: bytes | memoryview, digest_hex: str) -> bytes:
    return FRAME.pack(index, len(data), bytes.fromhex(digest_hex))


class BatchReader:
    """Incremental parser of a batch response: feed bytes, get (index, digest, data) back."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need: tuple[int, int, str] | None = None

    def feed(self, data: bytes) -> Iterator[tuple[int, str, bytes]]:
        self._buf += data
        while True:
            if self._need is None:
                if len(self._buf) < FRAME.size:
                    return
                index, length, digest = FRAME.unpack_from(self._buf)
                del self._buf[: FRAME.size]
                self._need = (index, length, digest.hex())
            index, length, digest = self._need
            if len(self._buf) < length:
                return
            payload = bytes(self._buf[:length])
            del self._buf[:length]
            self._need = None
            yield index, digest, payload

    def close(self) -> None:
        if self._buf or self._need is not None:
            raise ProtocolError("batch response ended in the middle of a chunk")
