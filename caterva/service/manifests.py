"""Manifest etags and gzip: what the source API's manifest route and the publisher's catalog
share (no web framework here)."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

from caterva.errors import BadRequest

MANIFEST_ETAG = re.compile(r"[0-9a-f]{32}")  # Manifest.content_etag: blake2b, 16 bytes, hex


def check_etag(text: str) -> str:
    """A manifest etag as a client sent it (quotes allowed); BadRequest if it is not one."""
    etag = text.strip().removeprefix("W/").strip('"')
    if not MANIFEST_ETAG.fullmatch(etag):
        raise BadRequest(f"since={text[:80]!r} is not a manifest etag (32 hex digits)")
    return etag


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header allows gzip (and does not refuse it with q=0)."""
    for item in (accept_encoding or "").lower().split(","):
        name, _, params = item.partition(";")
        if name.strip() in ("gzip", "*"):
            q = params.strip().removeprefix("q=")
            try:
                return not params.strip() or float(q) > 0
            except ValueError:
                return False
    return False


def compress(pieces: Iterable[bytes]) -> bytes:
    """The gzip of the pieces one after the other, made a piece at a time (a large body need
    not be whole). Level 5: a 45 MB manifest in well under a second, within a few percent of
    level 9."""
    deflate = zlib.compressobj(5, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [deflate.compress(piece) for piece in pieces]
    out.append(deflate.flush())
    return b"".join(out)
