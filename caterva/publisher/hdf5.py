"""HDF5 and NetCDF-4 files as groups of array datasets, beside the file itself.

Addressing: dataset ``/group/var`` of ``DIR/run/file.h5`` is served as ``run/file.h5/group/var``
(kind ``b2nd``): the file's own path, then the HDF5 path. The file stays served as the plain
file it is (downloadable whole); a name on disk cannot be a file and a directory at once, so
these paths never collide with another file, and each says which file a variable is from. The
file's vlmeta lists its datasets and, with the reason, those that cannot be served (variable-
length strings, references, opaque types, virtual or external storage, too many dimensions,
unusable names): nothing is dropped silently. Attributes become vlmeta (JSON values only).

A file is described when it changes (the catalog's stat key), every dataset at once, each chunk
read once to digest it (h5chunks.py says where each chunk comes from). Chunks compressed here
are made again lazily when first asked for, checked against their digest and kept in the
state directory under that digest: a changed chunk has a new digest, so a rewritten file
invalidates exactly the chunks that changed, and chunks no dataset refers to any more are
deleted (``collect``).

h5py and hdf5plugin are the optional extra ``caterva[hdf5]``. Without h5py, HDF5 files are
served as plain files only, which the log says once.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from caterva import atomic
from caterva.errors import CatervaError, NotSupported
from caterva.protocol.metadata import DatasetInfo, chunk_digest, info_json
from caterva.protocol.names import check_path
from caterva.publisher.entry import Entry
from caterva.publisher.h5chunks import Layout, attributes, unrepresentable
from caterva.service.ranges import StreamedFile

log = logging.getLogger("caterva.publisher")

SUFFIXES = (".h5", ".hdf5", ".he5", ".nc", ".nc4")
_h5py: list[Any] = []  # [module or None] once looked for


def h5py_module() -> Any:
    """h5py with hdf5plugin's filters registered (when installed), or None."""
    if not _h5py:
        try:
            import h5py
        except ImportError:
            log.info("h5py is not installed: HDF5 files are served as plain files only")
            h5py = None
        else:
            try:
                import hdf5plugin  # noqa: F401  (registers the Blosc2, LZ4, ... filters)
            except ImportError:
                log.info("hdf5plugin is not installed: HDF5 data using its filters is skipped")
        _h5py.append(h5py)
    return _h5py[0]


def handles(path: str) -> bool:
    """Whether ``path`` is served as a group of datasets too."""
    return path.lower().endswith(SUFFIXES) and h5py_module() is not None


@dataclass(eq=False, slots=True)
class Member(Entry):
    """A dataset inside an HDF5 file: read through h5py, chunk by chunk (h5chunks.py).
    Its stat key and its source are its file's."""

    name: str = ""  # its path inside the file
    cachedir: Path | None = None  # chunks compressed here, by digest

    @classmethod
    def inside(cls, owner: Entry, path: str, text: str, cachedir: Path) -> Member:
        """Dataset ``path`` (the file's path, then the HDF5 path) of the file of ``owner``."""
        name = path[len(owner.path) :]
        return cls(path, owner.stamp, text, None, owner.home, name=name, cachedir=cachedir)

    @property
    def source(self) -> str:
        return f"{self.home.top}/{self.path[: len(self.path) - len(self.name)]}"

    @property
    def key(self) -> tuple[str, int, str]:
        return self.source, self.stamp, self.name

    def read_chunk(self, index: int) -> tuple[bytes, str]:
        if 0 <= index < self.info.nchunks and self.cachedir is not None:
            digest = self.info.digests[index]
            try:
                return (self.cachedir / digest[:2] / digest).read_bytes(), digest
            except OSError:
                pass  # not made yet, or collected: made again below
        return Entry.read_chunk(self, index)  # (slots: no zero-argument super())

    def _open(self) -> Chunks:
        return Chunks(self)


class Chunks:
    """An open member, shaped as the catalog reads a container: ``get_chunk(i)``."""

    def __init__(self, member: Member) -> None:
        self.file = h5py_module().File(member.source, "r", locking=False)
        self.dataset = self.file[member.name]
        info = member.info
        self.layout = Layout.again(self.dataset, info.chunks, info.blocks, info.cparams)
        self.digests, self.cachedir = info.digests, member.cachedir

    def get_chunk(self, index: int) -> bytes:
        data, made = self.layout.chunk(self.dataset, index)
        if made:  # compressed here: the same bytes as described, or the file changed
            digest = self.digests[index]
            if chunk_digest(data) != digest:
                raise ValueError("the chunk differs from its description")
            if self.cachedir is not None:
                folder = self.cachedir / digest[:2]
                folder.mkdir(parents=True, exist_ok=True)
                atomic.write(folder / digest, data, sync=False)  # lost: made again
        return data


async def file_response(member: Member) -> StreamedFile:
    """``member`` as the ``.b2nd`` file a download of it writes (layout.FileWriter), made as
    it is sent: frame header, chunks, index and trailer. The header and index need every
    chunk's size first, so each chunk is read twice (a recompressed one comes from its kept
    copy the second time); memory stays at one chunk."""
    import anyio

    from caterva.protocol.layout import HEADER_ONLY, frame_bounds

    def sizes() -> list[int]:
        return [len(member.read_chunk(i)[0]) for i in range(member.info.nchunks)]

    lengths = await anyio.to_thread.run_sync(sizes)
    # a chunk of zeros kept as its header alone belongs in the index (layout.special_entry)
    bounds = None if HEADER_ONLY in lengths else frame_bounds(member.info, lengths)
    if bounds is None:
        raise NotSupported(f"this blosc2 frames {member.path}'s layout in an unknown way")
    head, tail = bounds
    offsets = list(itertools.accumulate(lengths, initial=len(head)))  # offsets[-1]: the tail's

    async def read(start: int, stop: int) -> AsyncIterator[bytes]:
        if start < len(head):
            yield head[start:stop]
        for n in range(max(bisect.bisect_right(offsets, start) - 1, 0), len(lengths)):
            if offsets[n] >= stop:
                break
            data, _ = await anyio.to_thread.run_sync(member.read_chunk, n)
            yield data[max(start - offsets[n], 0) : stop - offsets[n]]
        if stop > offsets[-1]:
            yield tail[max(start - offsets[-1], 0) : stop - offsets[-1]]

    name = member.path.rpartition("/")[2]
    return StreamedFile(offsets[-1] + len(tail), read, etag=f'"{member.info.etag}"', filename=name)


def with_members(entry: Entry, budget: int, cachedir: Path) -> Entry:
    """The plain file ``entry`` of an HDF5 file, with its datasets as members and their
    list in its vlmeta."""
    members, vlmeta = describe_file(entry, budget, cachedir)
    info = entry.info
    info = replace(info, vlmeta={**info.vlmeta, **vlmeta}, etag="")  # etag made again
    out = Entry.described(entry.path, entry.stamp, info, entry.frame, entry.home)
    out.members = members
    return out


def describe_file(
    entry: Entry, budget: int, cachedir: Path
) -> tuple[dict[str, Member], dict[str, Any]]:
    """The datasets of the HDF5 file of ``entry`` (a plain file entry) as members, and what to
    add to the file's vlmeta. A file HDF5 cannot read is said once in the log and has none."""
    h5py = h5py_module()
    try:
        with h5py.File(entry.source, "r", locking=False) as f:
            found: list[Any] = []
            f.visititems(lambda _, obj: found.append(obj))  # each object once, hard links only
            attrs, left_out = attributes(f)  # the file's own (NetCDF's global attributes)
            members, skipped = {}, {f"/@{k}": why for k, why in left_out.items()}
            for obj in found:
                if isinstance(obj, h5py.Dataset):
                    member, left_out = _member(entry, obj, budget, cachedir)
                    if isinstance(member, str):
                        skipped[obj.name] = member
                    else:
                        members[member.path] = member
                    skipped.update(left_out)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        log.warning(
            "%r is not a readable HDF5 file (%s): served as a plain file only", entry.path, exc
        )
        return {}, {"hdf5": {"error": str(exc)}}
    if skipped:
        log.info("%r: %d datasets not served: %s", entry.path, len(skipped), skipped)
    datasets = sorted(m.name for m in members.values())
    return members, {"hdf5": {"datasets": datasets, "skipped": skipped, "attrs": attrs}}


def _member(
    entry: Entry, ds: Any, budget: int, cachedir: Path
) -> tuple[Member | str, dict[str, str]]:
    """``ds`` described as a member (or why it cannot be), and its attributes left out."""
    path = f"{entry.path}{ds.name}"
    try:
        check_path(path)
        reason = unrepresentable(ds)
        if reason is not None:
            return reason, {}
        layout = Layout.of(ds, budget)
        sizes, digests = 0, []
        for index in range(layout.nchunks):
            data, _ = layout.chunk(ds, index)
            sizes += len(data)
            digests.append(chunk_digest(data))
        vlmeta, bad = attributes(ds)
        info = DatasetInfo(
            path=path,
            kind="b2nd",
            shape=list(layout.shape),
            dtype=layout.dtype_json,
            chunks=list(layout.chunks),
            blocks=list(layout.blocks),
            nchunks=layout.nchunks,
            chunksize=layout.chunksize,
            nbytes=layout.chunksize * layout.nchunks,  # as a b2nd counts it: whole chunks
            cbytes=sizes,
            cparams=layout.cparams,
            vlmeta=vlmeta,
            digests=digests,
            size=entry.stat.size,
            mtime=entry.stat.mtime_ns / 1e9,
        )
    except CatervaError as exc:
        return f"name not usable in caterva ({exc})", {}
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})", {}
    member = Member.inside(entry, path, info_json(info), cachedir)
    return member, {f"{ds.name}@{k}": why for k, why in bad.items()}


def adopt(entries: dict[str, Entry], cachedir: Path) -> None:
    """Entries loaded from the state store, as members of their files again, their stored
    descriptions reused as text. A file whose members were saved for another version of it
    (a crash between saves) is dropped with them, so the next scan describes it afresh."""
    files = {p: e for p, e in entries.items() if p.lower().endswith(SUFFIXES)}
    if not files or h5py_module() is None:
        return  # members left over: the first scan finds no file for them and deletes them
    for path in [p for p, e in files.items() if '"hdf5":' not in e.text]:
        del entries[path], files[path]  # stored when h5py was missing: described again now
    stale, inside = set(), tuple(p + "/" for p in files)
    for path, entry in list(entries.items()):
        if not path.startswith(inside):  # (one C call: 100,000 entries in a few ms)
            continue
        owner = next(files[p] for p in files if path.startswith(p + "/"))
        if entry.stamp != owner.stamp:
            stale.add(owner.path)
        if owner.members is None:
            owner.members = {}
        member = Member.inside(owner, path, entry.text, cachedir)
        entries[path] = owner.members[path] = member
    for parent in stale:
        for path in entries.pop(parent).members:
            entries.pop(path, None)


def collect(cachedir: Path, entries: dict[str, Entry]) -> None:
    """Delete kept chunks that no member refers to any more."""
    if not cachedir.is_dir():
        return
    used = {d for e in entries.values() if isinstance(e, Member) for d in e.info.digests}
    for folder in cachedir.iterdir():
        for chunk in folder.iterdir() if folder.is_dir() else ():
            if chunk.name not in used and not chunk.name.startswith("."):  # not one being written
                chunk.unlink(missing_ok=True)
