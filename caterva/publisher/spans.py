"""Where a batch's chunks lie in their Blosc2 files, so that a batch answer can send them with
sendfile (caterva.service.zerocopy) instead of reading them through Python: a 1 GiB batch costs the
publisher 0.3 s of CPU that way instead of 0.7 s (0.6 s instead of 1.1–2.7 s from disk).

A contiguous Blosc2 frame holds its chunks one after the other behind its header, and their
offsets in a compressed index chunk behind them; each chunk starts with its own size. Only
what that layout promises is used: a file of another shape, a special chunk (stored as a
negative offset, made when read) or any bound that does not hold gives None, and the batch
is read as before. The file is opened once and checked to be the version described (fstat
against the entry's stamp), so every byte sent comes from that inode; a write in place is
seen by ``changed`` between chunks and ends the answer short.
"""

from __future__ import annotations

import os
import struct

import blosc2
import numpy as np

from caterva.protocol import rest
from caterva.publisher.entry import Entry
from caterva.publisher.store import stamp_of
from caterva.service.spansend import Part, Plan

_MAGIC = slice(2, 10)  # b"b2frame\0"
_HEADER_LEN, _FRAME_SIZE, _CBYTES = 11, 16, 39  # big-endian fields of the frame header
_CHUNK_CBYTES = 12  # little-endian int32 in every chunk's header
_CHUNK_HEAD = 32  # a Blosc2 chunk header's size, the least a chunk can be
MAX_FILES = 256  # files a plan holds open while it is sent; a batch of more datasets is read


def plan(wanted: list[tuple[Entry, list[int]]]) -> Plan | None:
    """The frames of ``wanted`` as file ranges, or None when any chunk is not simply a range
    of a described file (the caller reads them instead)."""
    if len(wanted) > MAX_FILES:
        return None
    out = Plan([], [])
    try:
        for entry, indices in wanted:
            file = open(entry.key[0], "rb", buffering=0)  # noqa: SIM115 (Plan.close closes it)
            out.files.append(file)
            st = os.fstat(file.fileno())
            if entry.frame is None and stamp_of(st) != entry.stamp:
                out.close()
                return None
            found = _chunk_ranges(file.fileno(), st.st_size, entry.info.nchunks, indices)
            if found is None:
                out.close()
                return None
            digests = entry.info.digests
            for n, (offset, size) in zip(indices, found):
                head = rest.FRAME.pack(n, size, bytes.fromhex(digests[n]))
                out.parts.append(Part(head, file, offset, size, entry))
    except (OSError, ValueError, RuntimeError, struct.error):
        out.close()
        return None
    return out


def changed(part: Part) -> bool:
    """Whether ``part``'s file is no longer the version described (written in place)."""
    if part.entry.frame is not None:  # a plain file's frame in the statedir never changes
        return False
    try:
        return stamp_of(os.fstat(part.file.fileno())) != part.entry.stamp
    except OSError:
        return True


def _chunk_ranges(
    fd: int, file_size: int, nchunks: int, indices: list[int]
) -> list[tuple[int, int]] | None:
    head = os.pread(fd, 64, 0)
    if len(head) < 64 or head[_MAGIC] != b"b2frame\0":
        return None
    (header_len,) = struct.unpack_from(">i", head, _HEADER_LEN)
    (frame_size,) = struct.unpack_from(">Q", head, _FRAME_SIZE)
    (cbytes,) = struct.unpack_from(">q", head, _CBYTES)
    end = header_len + cbytes  # where the chunks end and the index begins
    if not (0 < header_len <= end and frame_size <= file_size and end + _CHUNK_HEAD <= frame_size):
        return None
    (index_size,) = struct.unpack_from("<i", os.pread(fd, _CHUNK_HEAD, end), _CHUNK_CBYTES)
    if not _CHUNK_HEAD <= index_size <= frame_size - end:
        return None
    offsets = np.frombuffer(blosc2.decompress(os.pread(fd, index_size, end)), dtype="<i8")
    if len(offsets) != nchunks:
        return None
    out = []
    for n in indices:
        start = header_len + int(offsets[n])
        if not header_len <= start <= end - _CHUNK_HEAD:
            return None  # a special chunk (negative offset) or out of bounds
        (size,) = struct.unpack_from("<i", os.pread(fd, 16, start), _CHUNK_CBYTES)
        if not _CHUNK_HEAD <= size <= end - start:
            return None
        out.append((start, size))
    return out
