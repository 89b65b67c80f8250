"""Which files under DIR a publisher serves, found by a walk of DIR or of one path in it.

Served: regular files (or links to one inside DIR) with a valid name. Not served: hidden names
and directories, names writers use while a file is incomplete (TEMP_SUFFIXES), links out of
DIR, what is inside a linked directory, and the publisher's own state directory.
"""

from __future__ import annotations

import os
from collections.abc import Container, Iterator
from pathlib import Path
from stat import S_ISREG

from caterva.errors import CatervaError
from caterva.protocol.names import check_path
from caterva.publisher.store import stamp_of

# names writers commonly use while a file is incomplete; hidden names are skipped too
TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".swp", "~")

# (path in the root, its stat key's stamp, is a link): neither the os.stat_result nor the full
# file name, 100,000 of which (~400 and ~100 bytes each) alive until a first scan ends left
# holes among the entries kept
Found = tuple[str, int, bool]


class Tree:
    def __init__(self, directory: Path, statedir: Path) -> None:
        self.directory = directory.resolve()
        self.top = str(self.directory)
        self.statedir = str(statedir.resolve())

    def inside(self, resolved: Path) -> bool:
        return resolved != self.directory and resolved.is_relative_to(self.directory)

    def walk(self, folder: str = "", known: Container[str] = ()) -> Iterator[Found]:
        """Every servable file under ``folder`` (a path in the root; "" for all of it), in a
        stable order. os.scandir and plain strings: pathlib objects per file made a walk
        cost ~20 ms per 1,000 files. Paths in ``known`` were valid names before: not
        checked again."""
        top = os.path.join(self.top, folder) if folder else self.top
        if folder and not self.enterable(folder):
            return
        yield from self._walk(top, folder + "/" if folder else "", known)

    def _walk(self, top: str, prefix: str, known: Container[str]) -> Iterator[Found]:
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
                    if not entry.is_symlink() and entry.path != self.statedir:
                        subdirs.append(entry)
                    continue
                if name.endswith(TEMP_SUFFIXES):
                    continue
                path = prefix + name
                if path not in known:
                    check_path(path)
                st = entry.stat()  # follows symlinks: what a reader would get
                if entry.is_symlink() and not self.inside(Path(entry.path).resolve()):
                    continue  # a link out of the root is never served
            except (CatervaError, OSError):
                continue  # an unusable name, or gone since listed
            if S_ISREG(st.st_mode):
                yield path, stamp_of(st), entry.is_symlink()
        for entry in subdirs:
            yield from self._walk(entry.path, f"{prefix}{entry.name}/", known)

    def enterable(self, folder: str) -> bool:
        """Whether a walk of DIR would enter ``folder``: a real directory (no link on the way),
        nothing hidden, not the state directory."""
        source = os.path.join(self.top, folder)
        return (
            not any(p.startswith(".") for p in folder.split("/"))
            and not (source + os.sep).startswith(self.statedir + os.sep)
            and os.path.realpath(source) == source
            and os.path.isdir(source)
        )

    def file(self, path: str) -> Found | None:
        """``path`` as a walk would find it, or None if a walk would not serve it."""
        folder, _, name = path.rpartition("/")
        if name.startswith(".") or name.endswith(TEMP_SUFFIXES):
            return None
        if folder and not self.enterable(folder):
            return None
        source = os.path.join(self.top, path)
        try:
            check_path(path)
            st = os.stat(source)
            link = os.path.islink(source)
            if link and not self.inside(Path(source).resolve()):
                return None
        except (CatervaError, OSError):
            return None
        return (path, stamp_of(st), link) if S_ISREG(st.st_mode) else None
