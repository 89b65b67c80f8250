"""The root's datasets as this publisher sees them: scan DIR, describe each file, diff scans.

    scan():  walk DIR -> stat each file -> same stat key as before: keep the entry (no read)
                                        -> new or changed: describe it (read + digest chunks)
             -> diff(previous infos, new infos) -> Diffs (create / update / delete)

Content identity is the DatasetInfo etag, so a touched but unchanged file yields no event.
A file that cannot be described yet (being written, truncated, locked) keeps its previous
entry, or stays unlisted, and is tried again at the next scan.

Entries keep the blosc2 container they were described with open for serving (after a
restart, opened at the first chunk request); a changed file gets a new entry, so readers
switch to a freshly opened container at the next scan.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from stat import S_ISREG
from typing import Any, Literal

import blosc2

from caterva.errors import CatervaError, ChunkOutOfRange, Unavailable, UnknownDataset
from caterva.protocol.layout import describe
from caterva.protocol.metadata import DatasetInfo, Kind, Manifest
from caterva.protocol.names import check_path
from caterva.protocol.seal import Seal
from caterva.publisher import plainfiles
from caterva.publisher.store import StatKey

log = logging.getLogger("caterva.publisher")

# names writers commonly use while a file is incomplete; hidden names are skipped too
TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".swp", "~")


def kind_of(name: str) -> Kind:
    if name.endswith(".b2nd"):
        return "b2nd"
    if name.endswith(".b2frame"):
        return "b2frame"
    return "file"


@dataclass
class Entry:
    """One served dataset: its source file, what it was when described, and how to read it."""

    path: str
    source: Path
    stat: StatKey
    info: DatasetInfo
    frame: Path | None = None  # plain files: the chunked copy in the statedir
    _container: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def read_chunk(self, index: int) -> tuple[bytes, str]:
        """Raw chunk ``index`` as stored, and its digest as described.

        The digest is not recomputed per read (hashing cost more than reading); instead the
        file's stat key is checked before and after: a file being written in place is not
        served (503) until a scan has described what it became. A plain file's chunks come
        from its own frame in the statedir, which never changes."""
        if not 0 <= index < self.info.nchunks:
            raise ChunkOutOfRange(
                f"chunk {index} out of range: {self.path!r} has {self.info.nchunks} chunks",
                index=index, nchunks=self.info.nchunks,
            )
        try:
            with self._lock:  # one blosc2 handle, used by one thread at a time
                stable = self.frame is not None or self.unchanged()
                if self._container is None:
                    self._container = blosc2.open(str(self.frame or self.source), mode="r")
                data = _schunk_of(self._container).get_chunk(index)
                stable = stable and (self.frame is not None or self.unchanged())
        except (OSError, RuntimeError, ValueError) as exc:  # changed or removed under us
            log.info("cannot read chunk %d of %r: %s", index, self.path, exc)
            stable = False
        if not stable:
            raise Unavailable(f"{self.path!r} is being written; retry shortly")
        return data, self.info.digests[index]

    def unchanged(self) -> bool:
        """Whether the source file is still the one described (same stat key)."""
        try:
            return StatKey.of(os.stat(self.source)) == self.stat
        except OSError:
            return False


@dataclass(frozen=True)
class Diff:
    path: str
    op: Literal["create", "update", "delete"]
    old: DatasetInfo | None
    new: DatasetInfo | None

    @property
    def chunks(self) -> list[int] | None:
        """Changed chunk indices; None for a create, a delete or a layout change."""
        if self.op != "update":
            return None
        return self.old.changed_chunks(self.new)


def diff(old: Mapping[str, DatasetInfo], new: Mapping[str, DatasetInfo]) -> list[Diff]:
    """What changed from ``old`` to ``new``, by path, judged by content etag only."""
    out = []
    for path in sorted(old.keys() | new.keys()):
        before, after = old.get(path), new.get(path)
        if before is None:
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


class Catalog:
    def __init__(
        self,
        name: str,
        directory: Path,
        framedir: Path,
        *,
        known: Mapping[str, tuple[StatKey, DatasetInfo]] | None = None,
        frame_chunksize: int = plainfiles.CHUNKSIZE,
        sealer: Callable[[str], Seal] | None = None,
    ) -> None:
        self.name = name
        self.directory = directory.resolve()
        self.framedir = framedir
        self.statedir = framedir.parent.resolve()  # never published, even if inside DIR
        self.frame_chunksize = frame_chunksize
        self.sealer = sealer  # signs each manifest version (caterva/publisher/signing.py)
        self.described = 0  # files read and digested: proves the stat cache works
        self._entries = {p: self._entry(p, s, i) for p, (s, i) in (known or {}).items()}
        self._manifest = Manifest(name, [e.info for e in self._entries.values()])
        self._manifest_body: tuple[str, bytes] | None = None
        self._unstable: set[str] = set()  # unreadable files, each logged once
        self._stale_frames: set[Path] = set()

    # --- reading (any thread) -----------------------------------------------------------------

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    def manifest_body(self) -> tuple[str, bytes]:
        """(etag, JSON) of the manifest with its seal, made once per version: it can be large."""
        manifest, cached = self._manifest, self._manifest_body
        if cached is None or cached[0] != manifest.etag:
            if self.sealer is not None:
                manifest = replace(manifest, seal=self.sealer(manifest.etag))
            cached = self._manifest_body = (manifest.etag, manifest.to_bytes())
        return cached

    def get(self, path: str) -> Entry:
        """The entry for a request path; never anything outside DIR."""
        check_path(path)
        entry = self._entries.get(path)
        if entry is None or not self.inside((self.directory / path).resolve()):
            raise UnknownDataset(f"no dataset {path!r} in root {self.name!r}", path=path)
        return entry

    def inside(self, resolved: Path) -> bool:
        return resolved != self.directory and resolved.is_relative_to(self.directory)

    # --- scanning (one thread at a time) ------------------------------------------------------

    def scan(self) -> ScanResult:
        previous = self._entries
        current: dict[str, Entry] = {}
        refreshed = []
        for path, source, st in self.walk():
            key = StatKey.of(st)
            old = previous.get(path)
            if old is not None and old.stat == key and self._intact(old):
                current[path] = old
                continue
            new = self._describe(path, Path(source), key)
            if new is None:  # not readable yet: keep what we served, retry next scan
                if old is not None:
                    current[path] = old
                continue
            current[path] = new
            if old is not None and old.info.etag == new.info.etag:
                refreshed.append(new)
        diffs = diff({p: e.info for p, e in previous.items()},
                     {p: e.info for p, e in current.items()})
        self._entries = current
        if diffs or refreshed:  # refreshed: same etags, but size and mtime moved on
            self._manifest = Manifest(self.name, [e.info for e in current.values()])
        self._collect_frames()
        return ScanResult(diffs, current, refreshed)

    def walk(self) -> Iterator[tuple[str, str, os.stat_result]]:
        """(path, file, stat) of every servable regular file under DIR, in a stable order.

        os.scandir and plain strings: a scan runs every scan_interval, and pathlib objects per
        file made it cost ~20 ms per 1,000 files."""
        yield from self._walk(str(self.directory), "", str(self.statedir))

    def _walk(self, top: str, prefix: str, statedir: str):
        try:
            with os.scandir(top) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return  # gone since listed, or unreadable
        subdirs = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            try:
                if entry.is_dir():  # follows a link, but a linked directory is not entered
                    if not entry.is_symlink() and entry.path != statedir:
                        subdirs.append(entry)
                    continue
                if name.endswith(TEMP_SUFFIXES):
                    continue
                path = check_path(prefix + name)
                st = entry.stat()  # follows symlinks: what a reader would get
                if entry.is_symlink() and not self.inside(Path(entry.path).resolve()):
                    continue  # a link out of the root is never served
            except (CatervaError, OSError):
                continue  # an unusable name, or gone since listed
            if S_ISREG(st.st_mode):
                yield path, entry.path, st
        for entry in subdirs:
            yield from self._walk(entry.path, f"{prefix}{entry.name}/", statedir)

    def _entry(self, path: str, stat: StatKey, info: DatasetInfo) -> Entry:
        frame = None
        if info.kind == "file":
            frame = plainfiles.frame_path(self.framedir, path, stat)
        return Entry(path, self.directory / path, stat, info, frame)

    def _intact(self, entry: Entry) -> bool:
        return entry.frame is None or entry.frame.exists()

    def _describe(self, path: str, source: Path, key: StatKey) -> Entry | None:
        kind = kind_of(path)
        frame = plainfiles.frame_path(self.framedir, path, key) if kind == "file" else None
        try:
            if frame is not None:
                schunk = plainfiles.open_frame(frame, key.size)
                if schunk is None:
                    plainfiles.build_frame(source, frame, self.frame_chunksize)
                    schunk = _schunk_of(blosc2.open(str(frame), mode="r"))
                container = schunk
                info = describe(schunk, path, "file", size=key.size, mtime=key.mtime_ns / 1e9)
                info = self._fix_empty(info)
            else:
                container = blosc2.open(str(source), mode="r")
                kind = "b2nd" if isinstance(container, blosc2.NDArray) else "b2frame"
                if kind_of(path) == "b2frame" and kind == "b2nd":
                    kind = "b2frame"  # served as the frame it is
                target = _schunk_of(container) if kind == "b2frame" else container
                info = describe(target, path, kind, size=key.size, mtime=key.mtime_ns / 1e9)
            after = StatKey.of(source.stat())
        except (OSError, RuntimeError, ValueError, KeyError, CatervaError) as exc:
            # said once per file, not at every scan while it is being copied in
            if path not in self._unstable:
                if len(self._unstable) > 10_000:
                    self._unstable.clear()
                self._unstable.add(path)
                log.info("skipping %r for now (%s: %s)", path, type(exc).__name__, exc)
            return None
        self._unstable.discard(path)
        if after != key:  # written while we read it: the next scan sees the final state
            return None
        self.described += 1
        return Entry(path, source, key, info, frame, container)  # kept open for serving

    def _fix_empty(self, info: DatasetInfo) -> DatasetInfo:
        # an empty frame reports chunksize -1; announce the chunking it would have
        if info.nchunks:
            return info
        size = self.frame_chunksize
        return replace(info, chunks=[size], blocks=[size], chunksize=size, etag="")

    def _collect_frames(self) -> None:
        """Delete frames no entry uses, one scan late so readers in flight can finish."""
        if not self.framedir.is_dir():
            return
        used = {e.frame for e in self._entries.values() if e.frame is not None}
        unused = {p for p in self.framedir.iterdir() if p not in used}
        for path in unused & self._stale_frames:
            path.unlink(missing_ok=True)
        self._stale_frames = unused


def _schunk_of(container: Any) -> Any:
    # an NDArray's .schunk must not outlive the NDArray (blosc2 frees it): keep the array
    return container.schunk if isinstance(container, blosc2.NDArray) else container
