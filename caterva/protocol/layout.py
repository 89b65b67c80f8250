"""DatasetInfo <-> numpy and blosc2: describe a stored dataset, rebuild its layout elsewhere.

This module and caterva.protocol.gather (reading selections) are the only protocol modules that
import blosc2, so commands that need no array code (most of the CLI) never pay for it; dtypes
(caterva.protocol.dtypes) need numpy only.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

import blosc2
import numpy as np

from caterva.errors import ProtocolError
from caterva.protocol.dtypes import dtype_from_json, dtype_to_json
from caterva.protocol.metadata import DatasetInfo, Kind, chunk_digest

_CPARAMS = ("codec", "codec_meta", "clevel", "use_dict", "typesize", "blocksize", "splitmode")


def cparams_to_json(cparams: Any) -> dict[str, Any]:
    out = {k: _int(getattr(cparams, k)) for k in _CPARAMS}
    out["use_dict"] = bool(cparams.use_dict)
    out["filters"] = [_int(f) for f in cparams.filters]
    out["filters_meta"] = [int(m) for m in cparams.filters_meta]
    return out


def _int(value: Any) -> int:
    return int(getattr(value, "value", value))  # blosc2's enums are not IntEnums


def cparams_from_json(value: dict[str, Any]) -> blosc2.CParams:
    try:
        return blosc2.CParams(
            codec=blosc2.Codec(value["codec"]),
            codec_meta=int(value["codec_meta"]),
            clevel=int(value["clevel"]),
            use_dict=bool(value["use_dict"]),
            typesize=int(value["typesize"]),
            blocksize=int(value["blocksize"]),
            splitmode=blosc2.SplitMode(value["splitmode"]),
            filters=[blosc2.Filter(f) for f in value["filters"]],
            filters_meta=[int(m) for m in value["filters_meta"]],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError("invalid cparams description") from exc


def _json_value(value: Any) -> Any:
    """vlmeta values are msgpack objects; keep what JSON can say, tag bytes."""
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _native_value(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__bytes__"} and isinstance(value["__bytes__"], str):
            return base64.b64decode(value["__bytes__"])
        return {k: _native_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_native_value(v) for v in value]
    return value


def vlmeta_to_json(vlmeta: Any) -> dict[str, Any]:
    return {str(k): _json_value(v) for k, v in vlmeta.getall().items()}


def describe(container: Any, path: str, kind: Kind, *, size: int, mtime: float) -> DatasetInfo:
    """DatasetInfo of an open NDArray or SChunk; reads every chunk once to digest it."""
    schunk = container.schunk if kind == "b2nd" else container
    if kind == "b2nd":
        shape, chunks, blocks = container.shape, container.chunks, container.blocks
        dtype = dtype_to_json(container.dtype)
    else:
        nbytes = schunk.nbytes
        shape, chunks = (nbytes,), (schunk.chunksize,)
        blocks = (schunk.blocksize or schunk.chunksize,)
        dtype = "|u1"
    return DatasetInfo(
        path=path,
        kind=kind,
        shape=list(shape),
        dtype=dtype,
        chunks=list(chunks),
        blocks=list(blocks),
        nchunks=schunk.nchunks,
        chunksize=schunk.chunksize,
        nbytes=schunk.nbytes,
        cbytes=schunk.cbytes,
        cparams=cparams_to_json(schunk.cparams),
        vlmeta=vlmeta_to_json(schunk.vlmeta),
        digests=[chunk_digest(schunk.get_chunk(i)) for i in range(schunk.nchunks)],
        size=size,
        mtime=mtime,
    )


def new_container(info: DatasetInfo, urlpath: str | None = None) -> Any:
    """An empty container with the source layout: an NDArray for b2nd, else an SChunk.

    Its chunks read as zeros until filled with ``schunk.update_chunk``: never read a chunk
    that was not filled.
    """
    cparams = cparams_from_json(info.cparams)
    storage = {"urlpath": urlpath, "contiguous": True, "mode": "w"} if urlpath else {}
    if info.kind == "b2nd":
        arr = blosc2.empty(
            tuple(info.shape),
            dtype=dtype_from_json(info.dtype),
            chunks=tuple(info.chunks),
            blocks=tuple(info.blocks),
            cparams=cparams,
            **storage,
        )
        target = arr.schunk
    else:
        arr = target = blosc2.SChunk(chunksize=info.chunksize, cparams=cparams, **storage)
    for k, v in info.vlmeta.items():
        target.vlmeta[k] = _native_value(v)
    return arr


class FileWriter:
    """Writes a dataset's chunks, fed in order, as a file equal to the source dataset.

    Blosc2 datasets become a Blosc2 file of the same layout holding the same compressed chunks
    (nothing is recompressed); plain files become their original bytes. Memory stays at one
    chunk. Use as a context manager; ``add`` each chunk from 0 to nchunks - 1.

    The frame is written here, not by blosc2 (frame_bounds): blosc2 writing a frame starts and
    joins four threads each time (for the index, whatever nthreads says), most of the cost of a
    small file. Only if blosc2 frames a layout in a way we do not expect does it write the file.
    """

    def __init__(self, info: DatasetInfo, dest: str | os.PathLike) -> None:
        self.info = info
        self.count = 0
        self._ends = frame_ends(info) if info.kind != "file" else None
        if info.kind == "file" or self._ends:
            self._out = open(dest, "wb", buffering=0)  # chunks are big: written as they come
            self._sizes: list[int] = []
            self._specials: dict[int, int] = {}  # chunk -> its index entry, for bodiless ones
            if self._ends:
                write_all(self._out.fileno(), [self._ends[0]])  # its sizes are set at close
        else:
            self._container = new_container(info, os.fspath(dest))

    def add(self, raw: bytes | list[memoryview]) -> None:
        """The next chunk: its bytes, or a list of pieces of them in order (rest.BatchReader)."""
        if self._ends:
            pieces = raw if isinstance(raw, list) else [raw]
            if (entry := special_entry(pieces)) is not None:
                self._specials[self.count] = entry
                self._sizes.append(0)
            else:
                self._sizes.append(write_all(self._out.fileno(), pieces))
            self.count += 1
            return
        if isinstance(raw, list):
            raw = b"".join(raw)
        if self.info.kind == "file":
            write_all(self._out.fileno(), [blosc2.decompress(raw)])
        elif self.info.kind == "b2nd":
            self._container.schunk.update_chunk(self.count, raw)
        else:
            self._container.append_chunk(raw)
        self.count += 1

    def close(self) -> None:
        if self.info.kind == "file":
            self._out.close()
        elif self._ends:
            with self._out as f:
                head, tail = frame_bounds(self.info, self._sizes, self._specials)
                write_all(f.fileno(), [tail])
                f.seek(0)
                write_all(f.fileno(), [head])
        else:
            del self._container  # blosc2 flushes the frame when the container goes

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_all(fd: int, pieces: list) -> int:
    """Every byte of ``pieces`` (bytes-likes, in order) to ``fd``, at its position, in one
    writev a time; returns how many. Views of received pieces go to the kernel as they are:
    joining them first cost a copy into fresh memory, page faults included, per chunk."""
    pieces = [piece for piece in pieces if len(piece)]
    total = sum(len(piece) for piece in pieces)
    while pieces:
        done = os.writev(fd, pieces[:_IOV_MAX])
        while pieces and done >= len(pieces[0]):  # a short write resumes where it stopped
            done -= len(pieces.pop(0))
        if done:
            pieces[0] = memoryview(pieces[0])[done:]
    return total


# Where a contiguous frame keeps what its chunks change (c-blosc2's README_CFRAME_FORMAT):
# header_size (msgpack int32), frame_size (uint64), uncompressed_size and compressed_size
# (int64), big-endian after their msgpack type byte; trailer_len (uint32) 22 bytes before the
# end. The chunk count is the index's length.
_IOV_MAX = 1024  # pieces in one writev (Linux's limit)
# A chunk's header (c-blosc2's README_CHUNK_FORMAT): 32 bytes; bits 4-6 of byte 31 say which
# special chunk it is: 1 zeros, 2 NaNs, 3 a repeated value (its bytes follow), 4 uninitialized.
_CHUNK_HEADER, _CHUNK_FLAGS, _BODILESS = 32, 31, (1, 2, 4)
HEADER_ONLY = _CHUNK_HEADER  # the size of a chunk that may be kept in the index alone
_HEADER_SIZE, _FRAME_SIZE, _FRAME_NBYTES, _FRAME_CBYTES, _TRAILER_LEN = 11, 16, 30, 39, -22
_INDEX_CPARAMS = blosc2.CParams(typesize=8, nthreads=1, codec=blosc2.Codec.ZSTD, clevel=5)
_FRAMES: dict[str, tuple[bytes, bytes] | None] = {}  # layout -> (header, trailer)


def frame_ends(info: DatasetInfo) -> tuple[bytes, bytes] | None:
    """The header and trailer of a frame of ``info``'s layout and vlmeta, as an empty one
    (its chunks change only frame_size and the byte counts in them), or None when blosc2 made
    a frame of an unexpected shape."""
    # not sort_keys: the trailer keeps vlmeta in the order given
    key = json.dumps(
        [info.kind, info.shape, info.dtype, info.chunks, info.blocks, info.cparams, info.vlmeta]
    )
    if key not in _FRAMES:
        if len(_FRAMES) >= 64:
            _FRAMES.clear()
        arr = new_container(info)  # held: the schunk of a freed NDArray frames no metalayers
        empty = (arr.schunk if info.kind == "b2nd" else arr).to_cframe()
        (head_size,) = struct.unpack_from(">i", empty, _HEADER_SIZE)
        (frame_size,) = struct.unpack_from(">Q", empty, _FRAME_SIZE)
        (trailer_len,) = struct.unpack_from(">I", empty, len(empty) + _TRAILER_LEN)
        expected = (
            empty[2:10] == b"b2frame\0"
            and empty[_FRAME_SIZE - 1] == 0xCF
            and empty[_FRAME_NBYTES - 1] == empty[_FRAME_CBYTES - 1] == 0xD3
            and frame_size == len(empty)
            and empty[_TRAILER_LEN - 1] == 0xCE
            and empty[-18] == 0xD8
            and head_size + trailer_len <= len(empty)
        )
        _FRAMES[key] = (empty[:head_size], empty[-trailer_len:]) if expected else None
    return _FRAMES[key]


def special_entry(pieces: list) -> int | None:
    """The chunk index entry of a chunk that is its header alone (pieces of it, in order):
    all zeros, NaNs or uninitialized. blosc2 keeps no bytes of such a chunk in a frame but
    says what it is in its index entry (0x80 | the kind, in the top byte), and does not open a
    frame that holds one as bytes. None for any other chunk (a repeated value keeps its bytes)."""
    if sum(map(len, pieces)) != _CHUNK_HEADER:
        return None
    kind = (bytes(b"".join(pieces))[_CHUNK_FLAGS] >> 4) & 7
    return (0x80 | kind) << 56 if kind in _BODILESS else None


def frame_bounds(
    info: DatasetInfo, sizes: list[int], specials: dict[int, int] | None = None
) -> tuple[bytes, bytes] | None:
    """What goes before and after the chunks in a Blosc2 frame of ``info`` whose chunks, one
    after the other, are ``sizes`` bytes long: the header, and the chunk index with the
    trailer. Both follow from the sizes alone, so a frame can be sent as it is made, and any
    byte of it located before a chunk is read. ``specials``: chunks kept in the index alone
    (special_entry; their size is 0). None when frame_ends is."""
    ends = frame_ends(info)
    if ends is None:
        return None
    head, trailer = bytearray(ends[0]), ends[1]
    body = sum(sizes)
    index = b""
    if sizes:
        offsets = np.cumsum([0, *sizes[:-1]], dtype="<u8")
        for n, entry in (specials or {}).items():
            offsets[n] = entry
        index = blosc2.compress2(offsets.tobytes(), cparams=_INDEX_CPARAMS)
    struct.pack_into(">Q", head, _FRAME_SIZE, len(head) + body + len(index) + len(trailer))
    struct.pack_into(">qBq", head, _FRAME_NBYTES, info.nbytes, 0xD3, body)
    return bytes(head), index + trailer
