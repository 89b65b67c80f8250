"""Plain files -> chunked Blosc2 frames, so they travel and cache like any other dataset.

The source file is read in ``chunksize`` blocks and appended to an on-disk SChunk (typesize 1,
ZSTD level 1: fast, and still good on the text and repetitive binaries such roots hold), so
memory stays at one block whatever the file size. The frame is named after the file's path and
stat key: a changed source gets a new frame, an unchanged one is found again after a restart.
It is written atomically (caterva.atomic), so a crash never leaves a half frame under a real
name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import blosc2

from caterva import atomic
from caterva.publisher.store import StatKey

SUFFIX = ".b2frame"
CHUNKSIZE = 1 << 20  # plain files travel in 1 MiB chunks


def frame_path(framedir: Path, path: str, stat: StatKey) -> Path:
    key = f"{path}\0{stat.size}\0{stat.mtime_ns}\0{stat.inode}".encode()
    return framedir / (hashlib.blake2b(key, digest_size=16).hexdigest() + SUFFIX)


def cparams() -> blosc2.CParams:
    return blosc2.CParams(
        codec=blosc2.Codec.ZSTD,
        clevel=1,
        typesize=1,
        filters=[blosc2.Filter.NOFILTER],
        filters_meta=[0],
    )


def build_frame(source: Path, dest: Path, chunksize: int) -> None:
    """Compress ``source`` into the frame ``dest``, one chunk in memory at a time."""
    dest.parent.mkdir(parents=True, exist_ok=True)

    def compress(tmp: Path) -> None:
        schunk = blosc2.SChunk(
            chunksize=chunksize, cparams=cparams(), urlpath=str(tmp), contiguous=True, mode="w"
        )
        buf = bytearray(chunksize)
        view = memoryview(buf)
        with open(source, "rb") as src:
            while n := src.readinto(buf):
                schunk.append_data(view[:n])
        del schunk  # flushes and closes the frame before it is synced and renamed

    atomic.write(dest, compress)


def open_frame(frame: Path, size: int) -> blosc2.SChunk | None:
    """The frame if it is complete for a source of ``size`` bytes, else None (rebuild it)."""
    try:
        schunk = blosc2.open(str(frame), mode="r")
    except (OSError, RuntimeError, ValueError):
        return None
    return schunk if isinstance(schunk, blosc2.SChunk) and schunk.nbytes == size else None
