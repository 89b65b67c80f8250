"""The root's datasets as this publisher sees them: scan DIR, describe each file, diff scans.

    scan():         walk all of DIR       -> stat each file found -> same stat key as before:
    refresh(paths): just these paths      -> keep the entry (no read); new or changed: describe
                    (and the dirs named)     it (read + digest chunks; many in parallel)
                    -> diff(previous, new) for the paths looked at -> create / update / delete

Content identity is the DatasetInfo etag, so a touched but unchanged file yields no event.
A file that cannot be described yet (being written, truncated, locked) keeps its previous
entry, or stays unlisted, and is tried again at the next look.

Entries (entry.py) hold neither an open file nor a decoded info, so memory does not grow with
open containers, and a restart takes the stored descriptions as they are. The manifest body is
spliced from each entry's JSON as it is sent, never held whole; only its gzip is kept. Every
manifest version is recorded (versions.py) for deltas.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import blosc2

from caterva.errors import CatervaError, UnknownDataset
from caterva.protocol.layout import describe
from caterva.protocol.metadata import DatasetInfo, Kind, manifest_etag, splice, spliced
from caterva.protocol.names import check_path
from caterva.protocol.rootetag import RootEtag
from caterva.protocol.seal import Seal
from caterva.publisher import hdf5, plainfiles
from caterva.publisher.entry import Entry, Home, ScanResult, diff, schunk_of
from caterva.publisher.openfiles import OpenFiles
from caterva.publisher.store import StatKey, stamp_of
from caterva.publisher.tree import Found, Tree
from caterva.publisher.versions import Versions
from caterva.service.manifests import compress

log = logging.getLogger("caterva.publisher")

OPEN_FILES = 64  # containers kept open for serving (openfiles.py)
PARALLEL = 16  # files to describe before a thread pool pays off
WORKERS = min(4, os.cpu_count() or 1)  # 5,000 tiny files: 1.7 s alone, 1.2 s with 2-4
# files handed to the pool at a time: pool.map of 100,000 at once kept 100,000 futures alive
# among the descriptions made meanwhile, and the heap stayed fragmented (+190 MiB of RSS)
BATCH = 256


def kind_of(name: str) -> Kind:
    if name.endswith(".b2nd"):
        return "b2nd"
    if name.endswith(".b2frame"):
        return "b2frame"
    return "file"


class Listing(Sequence[DatasetInfo]):
    """The current manifest as the API needs it: its etag, and its datasets decoded only
    when one is looked at (``len`` decodes none)."""

    def __init__(self, etag: str, entries: Mapping[str, Entry]) -> None:
        self.etag = etag
        self._entries = list(entries.values())

    @property
    def datasets(self) -> Listing:
        return self

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index):  # a Sequence's: one info, or a list of them for a slice
        if isinstance(index, slice):
            return [e.info for e in self._entries[index]]
        return self._entries[index].info

    def by_path(self) -> dict[str, DatasetInfo]:
        return {e.path: e.info for e in self._entries}


class Catalog:
    def __init__(
        self,
        name: str,
        directory: Path,
        framedir: Path,
        *,
        known: Mapping[str, tuple[int, str]] | None = None,
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
        self.home = Home(self.tree.top, self.files)
        self.described = 0  # files read and digested: proves the stat cache works
        self.walks = 0  # full walks of DIR: proves events are handled without one
        # what the state store says, reused as stored: (stamp, info_json text)
        self._entries = {p: self._entry(p, *row) for p, row in (known or {}).items()}
        self.h5dir = framedir.parent / "hdf5"  # chunks of HDF5 datasets compressed here
        hdf5.adopt(self._entries, self.h5dir)
        etags = ((p, e.etag) for p, e in self._entries.items())
        self._manifest = Listing(manifest_etag(name, etags), self._entries)
        self._index: RootEtag | None = None  # the manifest etag as files change
        self._versions = Versions(self._manifest.etag)
        self._lock = threading.Lock()  # entries, manifest and versions change together
        self._gzipped = ("", b"")  # (etag, the full manifest gzipped)
        self._unstable: set[str] = set()  # unreadable files, each logged once
        self._stale_frames: set[Path] = set()
        self._links: set[str] = set()  # entries that are links: their target has no events

    # --- reading (any thread) -----------------------------------------------------------------

    @property
    def manifest(self) -> Listing:
        return self._manifest

    def manifest_body(
        self, since: str | None = None, gzip: bool = False
    ) -> tuple[str, bytes | Iterator[bytes]]:
        """(etag, JSON) of the manifest with its seal, or of the delta since the version
        ``since`` when that version is recent enough. The full one is large (49 MB at 100,000
        datasets): plain, it is made piece by piece as it is read; gzipped (what subscribers
        ask for), once per version from those pieces, and kept."""
        with self._lock:
            manifest, entries = self._manifest, self._entries
            changed = self._versions.changed_since(since) if since else None
        seal = self.sealer(manifest.etag) if self.sealer is not None else None
        head = {"root": self.name, "etag": manifest.etag, "seal": seal and seal.to_dict()}
        if changed is not None:  # a ManifestDelta
            head |= {"since": since, "removed": sorted(p for p in changed if p not in entries)}
            body = spliced(head, (entries[p].text for p in sorted(changed) if p in entries))
            return manifest.etag, compress([body]) if gzip else body
        # entries are never changed once current (a look makes new ones): safe to read later
        pieces = splice(head, (e.text for e in entries.values()))
        if not gzip:
            return manifest.etag, pieces
        if self._gzipped[0] != manifest.etag:
            self._gzipped = (manifest.etag, compress(pieces))
        return self._gzipped

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
        found = {f[0]: f for f in self.tree.walk(known=self._entries)}
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

    def _update(self, found: dict[str, Found], looked: set[str]) -> ScanResult:
        """The catalog after looking at ``looked``, of which ``found`` are there now. Both are
        used up before files are described (``found`` is emptied): a first scan's hold
        100,000 paths, and their memory, freed early, takes the entries made next."""
        previous = self._entries
        current = dict(previous)
        # an HDF5 file's datasets come and go with it (hdf5.py)
        owned = {m for p in looked if p in previous for m in previous[p].members or ()}
        gone = (looked - found.keys()) | owned  # (owned: never a file found)
        del looked
        self._links.difference_update(gone)
        for path in gone - owned:
            for dropped in [path, *(getattr(current.pop(path, None), "members", None) or ())]:
                current.pop(dropped, None)
        todo = []
        for path, stamp, link in found.values():
            (self._links.add if link else self._links.discard)(path)
            old = previous.get(path)
            if not (old is not None and old.stamp == stamp and self._intact(old)):
                todo.append((path, stamp))
        found.clear()
        # only what is gone or was described again (with an HDF5 file's datasets) can differ:
        # a restart of 100,000 files compares none of the others
        refreshed, moved = [], gone | {path for path, _ in todo}
        for (path, _), (new, error) in zip(todo, self._describe_all(todo)):
            old = previous.get(path)
            if new is None:  # not readable yet: keep what we served, retry next time
                self._unreadable(path, error)
                continue
            self._unstable.discard(path)
            for member in (old and old.members) or ():
                current.pop(member, None)
            for entry in [new, *(new.members or {}).values()]:
                current[entry.path] = entry
                moved.add(entry.path)
                before = previous.get(entry.path)
                if before is not None and before.etag == entry.etag:
                    refreshed.append(entry)
        del todo
        changes = diff(previous, current, moved)
        for path in moved:
            old = previous.get(path)
            if old is not None and current.get(path) is not old:
                self.files.drop(old.key)  # its container is for a file that is no more
        if changes or refreshed:  # refreshed: same etags, but size and mtime moved on
            if previous or self._index is not None:
                if self._index is None:  # made once (what was served), then kept up to date
                    self._index = RootEtag(self.name, {p: e.etag for p, e in previous.items()})
                self._index.apply({d.path: d.new and d.new.etag for d in changes})
                etag = self._index.etag
            else:  # a first scan: hashed whole, its index (~10 MiB at 100,000) made on a change
                etag = manifest_etag(self.name, ((p, e.etag) for p, e in current.items()))
            manifest = Listing(etag, current)
            with self._lock:
                self._entries, self._manifest = current, manifest
                self._versions.record(manifest.etag, [d.path for d in changes])
            if owned or any(current[p].members for p in moved if p in current):
                hdf5.collect(self.h5dir, current)
        self._collect_frames()
        return ScanResult(changes, current, refreshed)

    def _entry(self, path: str, stamp: int, text: str) -> Entry:
        frame = None
        if kind_of(path) == "file":  # a plain file's kind is its name's
            frame = plainfiles.frame_path(self.framedir, path, StatKey.of_stamp(stamp))
        return Entry(path, stamp, text, frame, self.home)

    def _intact(self, entry: Entry) -> bool:
        return entry.frame is None or entry.frame.exists()

    def _describe_all(
        self, todo: list[tuple[str, int]]
    ) -> Iterator[tuple[Entry | None, Exception | None]]:
        """Each file described, in order, a batch at a time as they are asked for; several
        at once when there are many (blosc2 and BLAKE3 release the GIL while they decompress
        and hash)."""
        if len(todo) < PARALLEL:
            yield from (self._describe(*job) for job in todo)
            return
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            for start in range(0, len(todo), BATCH):
                yield from pool.map(lambda job: self._describe(*job), todo[start : start + BATCH])

    def _describe(self, path: str, stamp: int) -> tuple[Entry | None, Exception | None]:
        source, key = f"{self.tree.top}/{path}", StatKey.of_stamp(stamp)
        kind = kind_of(path)
        frame = plainfiles.frame_path(self.framedir, path, key) if kind == "file" else None
        try:
            if frame is not None:
                schunk = plainfiles.open_frame(frame, key.size)
                if schunk is None:
                    plainfiles.build_frame(Path(source), frame, self.frame_chunksize)
                    schunk = schunk_of(blosc2.open(str(frame), mode="r"))
                info = describe(schunk, path, "file", size=key.size, mtime=key.mtime_ns / 1e9)
                info = self._fix_empty(info)
            else:
                container = blosc2.open(source, mode="r")
                kind = "b2nd" if isinstance(container, blosc2.NDArray) else "b2frame"
                if kind_of(path) == "b2frame" and kind == "b2nd":
                    kind = "b2frame"  # served as the frame it is
                target = schunk_of(container) if kind == "b2frame" else container
                info = describe(target, path, kind, size=key.size, mtime=key.mtime_ns / 1e9)
            entry = Entry.described(path, stamp, info, frame, self.home)
            if frame is not None and hdf5.handles(path):  # its datasets too, as its members
                entry = hdf5.with_members(entry, self.frame_chunksize, self.h5dir)
            after = stamp_of(os.stat(source))
        except (OSError, RuntimeError, ValueError, KeyError, CatervaError) as exc:
            return None, exc
        if after != stamp:  # written while we read it: the next look sees the final state
            return None, None
        self.described += 1  # a race between threads only miscounts a test's figure
        return entry, None

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
