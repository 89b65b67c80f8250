"""The root's datasets as this publisher sees them: scan DIR, describe each file, diff scans.

    scan():         walk all of DIR       -> stat each file found -> same stat key as before:
    refresh(paths): just these paths      -> keep the entry (no read); new or changed: describe
                    (and the dirs named)     it (read + digest chunks; many in parallel)
                    -> diff(previous, new) for the paths looked at -> create / update / delete

Content identity is the DatasetInfo etag, so a touched but unchanged file yields no event.
A file that cannot be described yet (being written, truncated, locked) keeps its previous
entry, or stays unlisted, and is tried again at the next look.

Entries hold no open file: chunks are read through a bounded LRU of open containers
(openfiles.py), keyed by file and stat key, so a changed file is read from a fresh container.
Every manifest version is recorded (versions.py) to answer deltas.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import blosc2

from caterva.errors import CatervaError, ChunkOutOfRange, Unavailable, UnknownDataset
from caterva.protocol.layout import describe
from caterva.protocol.metadata import DatasetInfo, Kind, Manifest, ManifestDelta
from caterva.protocol.names import check_path
from caterva.protocol.seal import Seal
from caterva.publisher import plainfiles
from caterva.publisher.openfiles import OpenFiles
from caterva.publisher.store import StatKey
from caterva.publisher.tree import Found, Tree
from caterva.publisher.versions import Versions
from caterva.service.source_api import compress

log = logging.getLogger("caterva.publisher")

OPEN_FILES = 64  # containers kept open for serving (openfiles.py)
PARALLEL = 16  # files to describe before a thread pool pays off
WORKERS = min(4, os.cpu_count() or 1)  # 5,000 tiny files: 1.7 s alone, 1.2 s with 2-4


def kind_of(name: str) -> Kind:
    if name.endswith(".b2nd"):
        return "b2nd"
    if name.endswith(".b2frame"):
        return "b2frame"
    return "file"


@dataclass(eq=False)
class Entry:
    """One served dataset: its source file, what it was when described, and how to read it."""

    path: str
    source: Path
    stat: StatKey
    info: DatasetInfo
    frame: Path | None = None  # plain files: the chunked copy in the statedir
    files: OpenFiles = field(default_factory=lambda: OpenFiles(1), repr=False)
    members: dict[str, Entry] = field(default_factory=dict, repr=False)  # an HDF5 file's (hdf5.py)

    @property
    def key(self) -> tuple[str, StatKey]:
        """Its container in the LRU: a new version of the file is a new key."""
        return str(self.frame or self.source), self.stat

    def read_chunk(self, index: int) -> tuple[bytes, str]:
        """Raw chunk ``index`` as stored, and its digest as described.

        The digest is not recomputed per read (hashing cost more than reading); instead the
        file's stat key is checked before and after: a file being written in place is not
        served (503) until it has been described again. A plain file's chunks come from its
        own frame in the statedir, which never changes."""
        if not 0 <= index < self.info.nchunks:
            raise ChunkOutOfRange(
                f"chunk {index} out of range: {self.path!r} has {self.info.nchunks} chunks",
                index=index,
                nchunks=self.info.nchunks,
            )
        stable = self.frame is not None or self.unchanged()
        try:
            if stable:
                with self.files.use(self.key, self._open) as container:
                    data = _schunk_of(container).get_chunk(index)
                stable = self.frame is not None or self.unchanged()
        except (OSError, RuntimeError, ValueError) as exc:  # changed or removed under us
            log.info("cannot read chunk %d of %r: %s", index, self.path, exc)
            stable = False
        if not stable:
            raise Unavailable(f"{self.path!r} is being written; retry shortly")
        return data, self.info.digests[index]

    def _open(self) -> Any:
        return blosc2.open(self.key[0], mode="r")

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
        open_files: int = OPEN_FILES,
    ) -> None:
        self.name = name
        self.tree = Tree(directory, framedir.parent)  # the statedir is never published
        self.directory = self.tree.directory
        self.framedir = framedir
        self.frame_chunksize = frame_chunksize
        self.sealer = sealer  # signs each manifest version (caterva/publisher/signing.py)
        self.files = OpenFiles(open_files)
        self.described = 0  # files read and digested: proves the stat cache works
        self.walks = 0  # full walks of DIR: proves events are handled without one
        self._entries = {p: self._entry(p, s, i) for p, (s, i) in (known or {}).items()}
        self.h5dir = framedir.parent / "hdf5"  # chunks of HDF5 datasets compressed here
        from caterva.publisher import hdf5  # here, not above: it builds on Entry

        hdf5.adopt(self._entries, self.h5dir)
        self._manifest = Manifest(name, [e.info for e in self._entries.values()])
        self._versions = Versions(self._manifest.etag)
        self._lock = threading.Lock()  # entries, manifest and versions change together
        self._bodies: dict[bool, tuple[str, bytes]] = {}  # gzip? -> (etag, full manifest)
        self._unstable: set[str] = set()  # unreadable files, each logged once
        self._stale_frames: set[Path] = set()
        self._links: set[str] = set()  # entries that are links: their target has no events

    # --- reading (any thread) -----------------------------------------------------------------

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    def manifest_body(self, since: str | None = None, gzip: bool = False) -> tuple[str, bytes]:
        """(etag, JSON) of the manifest with its seal, or of the delta since the version
        ``since`` when that version is recent enough. The full one is made once per version
        (it can be large), and gzipped once when a client accepts that."""
        with self._lock:
            manifest, entries = self._manifest, self._entries
            changed = self._versions.changed_since(since) if since else None
        seal = self.sealer(manifest.etag) if self.sealer is not None else None
        if changed is not None:
            delta = ManifestDelta(
                self.name,
                since,
                manifest.etag,
                seal=seal,
                datasets=[entries[p].info for p in sorted(changed) if p in entries],
                removed=sorted(p for p in changed if p not in entries),
            )
            body = delta.to_bytes()
            return manifest.etag, compress(body) if gzip else body
        cached = self._bodies.get(gzip)
        if cached is None or cached[0] != manifest.etag:
            plain = self._bodies.get(False)
            if plain is None or plain[0] != manifest.etag:
                plain = (manifest.etag, replace(manifest, seal=seal).to_bytes())
            # only the form last asked for is kept with the plain one: they can be large
            self._bodies = {False: plain}
            cached = self._bodies[gzip] = (manifest.etag, compress(plain[1]) if gzip else plain[1])
        return cached

    def get(self, path: str) -> Entry:
        """The entry for a request path; never anything outside DIR."""
        check_path(path)
        entry = self._entries.get(path)
        if entry is None or not self.tree.inside((self.directory / path).resolve()):
            raise UnknownDataset(f"no dataset {path!r} in root {self.name!r}", path=path)
        return entry

    # --- scanning (one thread at a time) ------------------------------------------------------

    def scan(self) -> ScanResult:
        """Walk all of DIR: what changed anywhere, whatever events were missed."""
        self.walks += 1
        found = {f[0]: f for f in self.tree.walk()}
        return self._update(found, self._entries.keys() | found.keys())

    def refresh(self, paths: Iterable[str]) -> ScanResult:
        """Look again at just ``paths`` (relative to DIR: files, or directories to walk), as
        filesystem events name them, and at the links in DIR (whose targets may have changed
        without an event naming the link)."""
        found: dict[str, Found] = {}
        looked = set(self._links)
        folders = []  # directories come or gone: what they hold is looked at too
        for path in set(paths):
            looked.add(path)
            source = os.path.join(self.directory, path)
            if path not in self._entries and (os.path.isdir(source) or not os.path.lexists(source)):
                folders.append(path + "/")
                found.update((f[0], f) for f in self.tree.walk(path))
        if folders:
            looked.update(p for p in self._entries if p.startswith(tuple(folders)))
        for path in looked - found.keys():
            if (one := self.tree.file(path)) is not None:
                found[path] = one
        return self._update(found, looked | found.keys())

    def _update(self, found: Mapping[str, Found], looked: set[str]) -> ScanResult:
        """The catalog after looking at ``looked``, of which ``found`` are there now."""
        previous = self._entries
        current = dict(previous)
        # an HDF5 file's datasets come and go with it (hdf5.py)
        owned = {m for p in looked if p in previous for m in previous[p].members}
        looked = looked | owned
        for path in looked - found.keys() - owned:
            for gone in [path, *getattr(current.pop(path, None), "members", ())]:
                current.pop(gone, None)
        todo = []
        for path, source, st, link in found.values():
            (self._links.add if link else self._links.discard)(path)
            key = StatKey.of(st)
            old = previous.get(path)
            if not (old is not None and old.stat == key and self._intact(old)):
                todo.append((path, source, key))
        refreshed = []
        for (path, _, _), (new, error) in zip(todo, self._describe_all(todo)):
            old = previous.get(path)
            if new is None:  # not readable yet: keep what we served, retry next time
                self._unreadable(path, error)
                continue
            self._unstable.discard(path)
            for gone in old.members if old is not None else ():
                current.pop(gone, None)
            looked |= new.members.keys()
            for entry in [new, *new.members.values()]:
                current[entry.path] = entry
                before = previous.get(entry.path)
                if before is not None and before.info.etag == entry.info.etag:
                    refreshed.append(entry)
        changes = diff(
            {p: previous[p].info for p in looked if p in previous},
            {p: current[p].info for p in looked if p in current},
        )
        for path in looked:
            old = previous.get(path)
            if old is not None and current.get(path) is not old:
                self.files.drop(old.key)  # its container is for a file that is no more
            if path not in found:
                self._links.discard(path)
        if changes or refreshed:  # refreshed: same etags, but size and mtime moved on
            manifest = Manifest(self.name, [e.info for e in current.values()])
            with self._lock:
                self._entries, self._manifest = current, manifest
                self._versions.record(manifest.etag, [d.path for d in changes])
            if owned or any(e.members for e in current.values()):
                from caterva.publisher import hdf5

                hdf5.collect(self.h5dir, current)
        self._collect_frames()
        return ScanResult(changes, current, refreshed)

    def _entry(self, path: str, stat: StatKey, info: DatasetInfo) -> Entry:
        frame = None
        if info.kind == "file":
            frame = plainfiles.frame_path(self.framedir, path, stat)
        return Entry(path, self.directory / path, stat, info, frame, self.files)

    def _intact(self, entry: Entry) -> bool:
        return entry.frame is None or entry.frame.exists()

    def _describe_all(
        self, todo: list[tuple[str, str, StatKey]]
    ) -> Iterable[tuple[Entry | None, Exception | None]]:
        """Each file described; several at once when there are many (blosc2 and BLAKE3
        release the GIL while they decompress and hash)."""
        if len(todo) < PARALLEL:
            return [self._describe(*job) for job in todo]
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            return list(pool.map(lambda job: self._describe(*job), todo))

    def _describe(
        self, path: str, source: str, key: StatKey
    ) -> tuple[Entry | None, Exception | None]:
        from caterva.publisher import hdf5

        kind, members = kind_of(path), {}
        frame = plainfiles.frame_path(self.framedir, path, key) if kind == "file" else None
        try:
            if frame is not None:
                schunk = plainfiles.open_frame(frame, key.size)
                if schunk is None:
                    plainfiles.build_frame(Path(source), frame, self.frame_chunksize)
                    schunk = _schunk_of(blosc2.open(str(frame), mode="r"))
                info = describe(schunk, path, "file", size=key.size, mtime=key.mtime_ns / 1e9)
                info = self._fix_empty(info)
                if hdf5.handles(path):  # its datasets too, as members of its entry
                    entry = Entry(path, Path(source), key, info, frame, self.files)
                    members, vlmeta = hdf5.describe_file(entry, self.frame_chunksize, self.h5dir)
                    info = replace(info, vlmeta={**info.vlmeta, **vlmeta}, etag="")
            else:
                container = blosc2.open(source, mode="r")
                kind = "b2nd" if isinstance(container, blosc2.NDArray) else "b2frame"
                if kind_of(path) == "b2frame" and kind == "b2nd":
                    kind = "b2frame"  # served as the frame it is
                target = _schunk_of(container) if kind == "b2frame" else container
                info = describe(target, path, kind, size=key.size, mtime=key.mtime_ns / 1e9)
            after = StatKey.of(os.stat(source))
        except (OSError, RuntimeError, ValueError, KeyError, CatervaError) as exc:
            return None, exc
        if after != key:  # written while we read it: the next look sees the final state
            return None, None
        self.described += 1  # a race between threads only miscounts a test's figure
        return Entry(path, Path(source), key, info, frame, self.files, members), None

    def _unreadable(self, path: str, error: Exception | None) -> None:
        # said once per file, not at every look while it is being copied in
        if error is None or path in self._unstable:
            return
        if len(self._unstable) > 10_000:
            self._unstable.clear()
        self._unstable.add(path)
        log.info("skipping %r for now (%s: %s)", path, type(error).__name__, error)

    def _fix_empty(self, info: DatasetInfo) -> DatasetInfo:
        # an empty frame reports chunksize -1; announce the chunking it would have
        if info.nchunks:
            return info
        size = self.frame_chunksize
        return replace(info, chunks=[size], blocks=[size], chunksize=size, etag="")

    def _collect_frames(self) -> None:
        """Delete frames no entry uses, one look late so readers in flight can finish."""
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
