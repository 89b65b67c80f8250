"""One served dataset: its source file, what it was when described, and how to read it.

What was described is held as the info's JSON text (``info_json``, which ends with its etag:
DatasetInfo's last field), decoded only when used (``info_of``, a bounded cache): 100,000
entries cost their text, not 100,000 DatasetInfo objects, and a restart reuses the stored text
without parsing it. No entry holds an open file: chunks are read through a bounded LRU of open
containers (openfiles.py), keyed by file and stat key, so a changed file is read from a fresh
container. Nor does it hold its file's full name (made from the root's, which all entries
share in ``Home``), a stat tuple (one int, its stamp) or its etag apart from its text: per
entry, only what differs from one to the next.

``diff`` says what changed between two sets of entries, judged by etag (a scan's ``Diff``s).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import blosc2

from caterva.errors import ChunkOutOfRange, Unavailable
from caterva.protocol.metadata import DatasetInfo, info_json, info_of
from caterva.publisher.openfiles import OpenFiles
from caterva.publisher.store import StatKey, stamp_of

log = logging.getLogger("caterva.publisher")

ETAG_END = 34  # info_json ends with "etag":"<32 hex digits>"}


@dataclass(frozen=True, slots=True)
class Home:
    """What all entries of a catalog share: the root directory and its open containers."""

    top: str  # DIR, resolved
    files: OpenFiles


@dataclass(eq=False, slots=True)
class Entry:
    path: str
    stamp: int  # its file's StatKey packed
    text: str  # the DatasetInfo as info_json
    frame: Path | None  # plain files: the chunked copy in the statedir
    home: Home
    members: dict[str, Entry] | None = None  # an HDF5 file's datasets (hdf5.py)

    @classmethod
    def described(
        cls, path: str, stamp: int, info: DatasetInfo, frame: Path | None, home: Home
    ) -> Entry:
        return cls(path, stamp, info_json(info), frame, home)

    @property
    def info(self) -> DatasetInfo:
        return info_of(self.text)

    @property
    def etag(self) -> str:
        """Its content etag, read from the end of its text (not kept twice)."""
        return self.text[-ETAG_END:-2]

    @property
    def source(self) -> str:
        """Its file."""
        return f"{self.home.top}/{self.path}"

    @property
    def stat(self) -> StatKey:
        return StatKey.of_stamp(self.stamp)

    @property
    def key(self) -> tuple[str, int]:
        """Its container in the LRU: a new version of the file is a new key."""
        return str(self.frame or self.source), self.stamp

    def read_chunk(self, index: int) -> tuple[bytes, str]:
        """Raw chunk ``index`` as stored, and its digest as described.

        The digest is not recomputed per read (hashing cost more than reading); instead the
        file's stat key is checked before and after: a file being written in place is not
        served (503) until it has been described again. A plain file's chunks come from its
        own frame in the statedir, which never changes."""
        info = self.info
        if not 0 <= index < info.nchunks:
            raise ChunkOutOfRange(
                f"chunk {index} out of range: {self.path!r} has {info.nchunks} chunks",
                index=index,
                nchunks=info.nchunks,
            )
        stable = self.frame is not None or self.unchanged()
        try:
            if stable:
                with self.home.files.use(self.key, self._open) as container:
                    data = schunk_of(container).get_chunk(index)
                stable = self.frame is not None or self.unchanged()
        except (OSError, RuntimeError, ValueError) as exc:  # changed or removed under us
            log.info("cannot read chunk %d of %r: %s", index, self.path, exc)
            stable = False
        if not stable:
            raise Unavailable(f"{self.path!r} is being written; retry shortly")
        return data, info.digests[index]

    def _open(self) -> Any:
        return blosc2.open(self.key[0], mode="r")

    def unchanged(self) -> bool:
        """Whether the source file is still the one described (same stat key)."""
        try:
            return stamp_of(os.stat(self.source)) == self.stamp
        except OSError:
            return False


def schunk_of(container: Any) -> Any:
    # an NDArray's .schunk must not outlive the NDArray (blosc2 frees it): keep the array
    return container.schunk if isinstance(container, blosc2.NDArray) else container


@dataclass(frozen=True, slots=True)  # a first scan makes one per file
class Diff:
    path: str
    op: Literal["create", "update", "delete"]
    old: Entry | None
    new: Entry | None

    @property
    def chunks(self) -> list[int] | None:
        """Changed chunk indices; None for a create, a delete or a layout change."""
        if self.op != "update":
            return None
        return self.old.info.changed_chunks(self.new.info)


def diff(
    old: Mapping[str, Entry], new: Mapping[str, Entry], paths: Iterable[str] | None = None
) -> list[Diff]:
    """What changed from ``old`` to ``new``, by path, judged by content etag only; at
    ``paths`` only, when given (the others are known to be the same)."""
    out = []
    for path in sorted(old.keys() | new.keys() if paths is None else paths):
        before, after = old.get(path), new.get(path)
        if before is None:
            if after is not None:  # (a path looked at may be in neither)
                out.append(Diff(path, "create", None, after))
        elif after is None:
            out.append(Diff(path, "delete", before, None))
        elif before.etag != after.etag:
            out.append(Diff(path, "update", before, after))
    return out


@dataclass
class ScanResult:
    diffs: list[Diff]
    entries: dict[str, Entry]  # the catalog after the scan
    refreshed: list[Entry]  # re-described without a content change (stat cache to update)
