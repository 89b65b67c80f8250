"""Where a download lands, with no network: the target of a dataset or a root, how a file is
placed there, and the directories a root download makes.

A download writes ``DEST.part`` and renames it to DEST only once every chunk arrived and
matched the digest the dataset's info promised, so DEST is never a half-written file. What
DEST already is decides the rest (``Placement``): a symlink is followed (the file it points to
is replaced, the link stays), a FIFO or a device is written through, never replaced; an
existing file is replaced only when asked to (``overwrite``); a missing directory is an error.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from caterva.errors import BadRequest, TargetExists
from caterva.protocol.metadata import DatasetInfo


@dataclass(frozen=True)
class Placement:
    """How a download lands on its target: written to ``part``, then renamed onto ``final``
    (``through`` False), or copied through ``final`` (a FIFO, a device: renaming would
    replace it) from a ``part`` in the temporary directory."""

    part: Path
    final: Path
    through: bool

    @classmethod
    def of(cls, target: Path) -> Placement:
        """Raises BadRequest for a target that cannot be written."""
        try:
            mode = os.stat(target).st_mode  # follows symlinks
        except FileNotFoundError:
            if target.is_symlink():
                raise BadRequest(f"{target} is a symlink to nowhere: not replaced") from None
            if not target.parent.is_dir():
                raise BadRequest(f"cannot write {target}: no directory {target.parent}") from None
            return cls(_part_of(target), target, through=False)
        if stat.S_ISDIR(mode):
            raise BadRequest(f"{target} is a directory")
        if not stat.S_ISREG(mode):  # FIFO, device, socket: write into it
            fd, part = tempfile.mkstemp(prefix=f"caterva-{target.name}-", suffix=".part")
            os.close(fd)
            return cls(Path(part), target, through=True)
        final = Path(os.path.realpath(target))  # through a symlink: replace what it points to
        return cls(_part_of(final), final, through=False)

    def land(self) -> None:
        if self.through:
            with open(self.part, "rb") as src, open(self.final, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            self.part.unlink()
        else:
            os.replace(self.part, self.final)


def _part_of(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def refuse_existing(target: Path) -> None:
    """A download replaces a file already there only when asked to: an empty one (what a
    shell's ``>`` just made) holds nothing to lose."""
    if target.is_file() and target.stat().st_size:
        raise TargetExists(f"{target} exists already: not replaced", path=str(target))


def dataset_target(path: str, dest: str | os.PathLike | None, overwrite: bool = True) -> Path:
    """Like cp: no dest -> ./NAME; an existing directory -> DIR/NAME; else dest itself, whose
    directory must exist."""
    name = PurePosixPath(path).name
    target = Path(name) if dest is None else Path(dest)
    if target.is_dir():
        target = target / name
    if not target.parent.is_dir():
        raise BadRequest(f"cannot write {target}: no directory {target.parent}")
    if not overwrite:
        refuse_existing(target)
    return target


def root_targets(
    root: str, infos: list[DatasetInfo], dest: str | os.PathLike | None, overwrite: bool = True
) -> tuple[Path, list[tuple[DatasetInfo, Path]]]:
    """A root goes to DIR (default ./ROOT), each dataset to DIR/its/path, except a dataset
    inside a file (an HDF5 file's variables): the file brings it. DIR's parent must exist;
    without ``overwrite`` a file already at a dataset's place is refused up front."""
    base = Path(root if dest is None else dest)
    if base.exists() and not base.is_dir():
        raise BadRequest(f"{base} exists and is not a directory")
    if not base.parent.is_dir():
        raise BadRequest(f"cannot write {base}: no directory {base.parent}")
    resolved = base.resolve()
    inside: set[Path] = set()  # parents checked already (a root has few, and many files)
    out = []
    paths = {info.path for info in infos}
    for info in infos:
        if any(str(parent) in paths for parent in PurePosixPath(info.path).parents):
            continue
        target = base.joinpath(*PurePosixPath(info.path).parts)
        # paths are validated relative names, but a symlink already in DIR could still
        # point elsewhere: check where the file would really land
        if target.parent not in inside:
            if not target.parent.resolve().is_relative_to(resolved):
                raise BadRequest(f"{target} would be written outside {base}")
            inside.add(target.parent)
        if not overwrite:
            refuse_existing(target)
        out.append((info, target))
    return base, out


@contextmanager
def made_dirs(base: Path, targets: list[tuple[DatasetInfo, Path]]) -> Iterator[None]:
    """Create ``base`` for a root download; if the download fails, remove the directories it
    created that are still empty (a failed download leaves nothing behind it made)."""
    dirs = {base} | {t.parent for _, t in targets}
    for d in list(dirs):
        dirs.update(p for p in d.parents if p.is_relative_to(base))
    new = sorted((d for d in dirs if not d.exists()), key=lambda d: len(d.parts), reverse=True)
    base.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for d in new:  # deepest first
            try:
                d.rmdir()
            except OSError:  # not empty (another file, a finished dataset) or gone
                pass
        raise
