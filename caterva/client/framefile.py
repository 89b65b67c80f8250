"""A Blosc2 dataset received as the subscriber's ``/file`` frame, verified as it is written.

The subscriber sends a fully cached Blosc2 dataset as the very frame a download would write
(caterva.subscriber.files: header, the compressed chunks one after the other, then the chunk
index and the trailer). So the client need not frame anything, nor import blosc2 (~0.3 s of
a CLI download): the body goes to disk as it arrives, in large writes. Nothing of it is
trusted on the way: the frame is walked as it passes (the header's length, then each chunk's
length from its own header), every chunk is hashed and checked against the digest the
dataset's info promised, and the frame's own counts (size, bytes, compressed bytes) must be
those of what arrived. The ETag names the version sent: another one than the info's is a
change (DatasetChanged, and the download runs again from the top, as on the chunk path).

Layout of a contiguous frame (c-blosc2's README_CFRAME_FORMAT): the header starts with a
msgpack fixarray, then ``b2frame\\0``; header_size is an int32 at byte 11, frame_size a uint64
at 16, uncompressed and compressed sizes int64 at 30 and 39, all big-endian. A chunk's own
header holds its compressed size as a little-endian int32 at byte 12.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping

from caterva import atomic
from caterva.client.placement import Placement
from caterva.client.transfer import Meter, chunk_nbytes
from caterva.errors import DatasetChanged, DigestMismatch, ProtocolError
from caterva.protocol.metadata import DatasetInfo
from caterva.protocol.rest import MAX_OVERHEAD

_MAGIC = b"b2frame\0"
_HEAD_MIN = 64  # header_size, frame_size, and the sizes are all in a header's first bytes
_HEAD_MAX = 1 << 20  # a frame header holds the layout and metalayers: never this big
_CHUNK_HEAD = 32  # a chunk's header (cbytes at byte 12); a chunk is never shorter


class FrameFile:
    """The ``/file`` answer of one Blosc2 dataset into ``placed.part``: ``begin`` with the
    answer's headers, ``take`` its body in order, then ``verify`` and ``store`` each buffer
    taken (each in order, in threads of their own), then ``finish`` (or ``abort``)."""

    def __init__(self, info: DatasetInfo, placed: Placement, meter: Meter) -> None:
        self.info = info
        self.placed = placed
        self.meter = meter
        self.size = -1  # the Content-Length promised
        self.got = 0  # bytes received
        self._fd = -1
        self._head = bytearray()  # the frame header's first _HEAD_MIN bytes
        self._skip = 0  # bytes of the header still to come after those
        self._chunk = 0  # the chunk being received
        self._left = 0  # its bytes still to come (0: its header is next)
        self._pending = bytearray()  # a chunk header split between two pieces
        self._hash = None
        self._cbytes = 0

    def begin(self, headers: Mapping[str, str]) -> None:
        if headers.get("etag") != f'"{self.info.etag}"':
            raise DatasetChanged(f"{self.info.path} changed since its info was read: run it again")
        try:
            self.size = int(headers["content-length"])
        except (KeyError, ValueError):
            raise ProtocolError("the subscriber sent a file without its length") from None
        self._fd = os.open(self.placed.part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        atomic.allocate(self._fd, self.size)

    def take(self, pieces: list[bytes]) -> list[bytes]:
        """The next pieces of the body, counted."""
        self.meter.check()
        self.got += sum(map(len, pieces))
        if self.got > self.size:
            raise ProtocolError("the subscriber sent more than the file's length")
        return pieces

    def verify(self, pieces: list[bytes]) -> None:
        """Hash and check the chunks ``pieces`` end or hold (in order, one thread)."""
        # joined: chunk-sized hash updates, for which blake3 lets go of the GIL (small ones
        # would hold it, and the receiving thread would wait for it at every read)
        self._walk(memoryview(b"".join(pieces)))

    def store(self, pieces: list[bytes]) -> None:
        """Write ``pieces`` to the file (in order, one thread: beside ``verify``'s)."""
        left = sum(map(len, pieces))
        while left:
            left -= os.writev(self._fd, pieces)
            if left:  # a short write: the rest
                data = b"".join(pieces)
                pieces = [data[len(data) - left :]]

    def _walk(self, data: memoryview) -> None:
        """Follow the frame through ``data``: hash every chunk and check it."""
        if len(self._head) < _HEAD_MIN:
            take = _HEAD_MIN - len(self._head)
            self._head += data[:take]
            data = data[take:]
            if len(self._head) < _HEAD_MIN:
                return
            self._skip = self._header() - _HEAD_MIN
        if self._skip:  # the rest of the header (layout, metalayers): written, not walked
            take = min(self._skip, len(data))
            self._skip -= take
            data = data[take:]
        nchunks = self.info.nchunks
        while data and self._chunk < nchunks:
            if not self._left:  # a chunk header: its length
                need = _CHUNK_HEAD - len(self._pending)
                self._pending += data[:need]
                data = data[need:]
                if len(self._pending) < _CHUNK_HEAD:
                    return
                (cbytes,) = struct.unpack_from("<i", self._pending, 12)
                if not _CHUNK_HEAD <= cbytes <= self.info.chunksize + MAX_OVERHEAD:
                    raise ProtocolError(f"chunk {self._chunk} of {self.info.path}: bad length")
                from blake3 import blake3  # not at import: the CLI's other commands never hash

                self._hash = blake3(self._pending)
                self._cbytes += cbytes
                self._left = cbytes - _CHUNK_HEAD
                self._pending = bytearray()
            take = min(self._left, len(data))
            self._hash.update(data[:take])
            self._left -= take
            data = data[take:]
            if not self._left:
                self._chunk_done()

    def _chunk_done(self) -> None:
        i = self._chunk
        if self._hash.hexdigest(16) != self.info.digests[i]:
            raise DigestMismatch(
                f"chunk {i} of {self.info.path} does not match its digest",
                index=i,
                path=self.info.path,
            )
        self._chunk += 1
        self.meter.advance(chunk_nbytes(self.info, i))

    def _header(self) -> int:
        """The frame header's size; its counts are checked against the whole at ``finish``."""
        head = self._head
        (head_size,) = struct.unpack_from(">i", head, 11)
        if head[2:10] != _MAGIC or not _HEAD_MIN <= head_size <= _HEAD_MAX:
            raise ProtocolError(f"the subscriber sent {self.info.path} in an unknown frame")
        return head_size

    def finish(self):
        """The frame is whole and every count in it is what arrived: the file lands."""
        head = self._head
        done = self._chunk == self.info.nchunks and not self._left and self.got == self.size
        if not done or len(head) < _HEAD_MIN or self._skip:
            raise ProtocolError(f"{self.info.path}: the subscriber sent a short file")
        frame_size, nbytes, cbytes = (
            struct.unpack_from(">Q", head, 16)[0],
            struct.unpack_from(">q", head, 30)[0],
            struct.unpack_from(">q", head, 39)[0],
        )
        if (frame_size, nbytes, cbytes) != (self.size, self.info.nbytes, self._cbytes):
            raise ProtocolError(f"the subscriber sent {self.info.path} with wrong sizes")
        self._close()
        self.placed.land()
        return self.placed.final

    def abort(self) -> None:
        self._close()
        self.placed.part.unlink(missing_ok=True)

    def _close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
