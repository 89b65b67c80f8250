"""A chunk cache's files: ``<folder>/<index>.<digest>``, each the compressed bytes exactly as the
source stores them, written under a temporary name and renamed (caterva.atomic), after they
were checked against the digest they came with and the one the dataset's version promises.
The digest in the name makes a file's content its identity (see cache.py). After a crash,
``reconcile`` makes the files and the index agree again."""

from __future__ import annotations

import contextlib
import os
import shutil
from functools import partial
from pathlib import Path

from caterva import atomic
from caterva.protocol.metadata import chunk_digest
from caterva.subscriber.state import State


def chunk_file(folder: Path, index: int, digest: str) -> Path:
    return folder / f"{index}.{digest}"


def unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def verify_and_write(checks: list[tuple[Path, int, str, str, bytes, bool]]) -> int:
    """Check each chunk (folder, index, digest sent, digest expected, bytes, keep) against the
    digest sent and the one expected, writing those kept; stops at the first bad one. Returns
    how many passed."""
    for n, (folder, index, sent, expected, data, keep) in enumerate(checks):
        actual = chunk_digest(data)
        if actual != sent or actual != expected:
            return n
        if keep:
            _write(chunk_file(folder, index, actual), data)
    return len(checks)


def _write(path: Path, data: bytes) -> None:
    # no fsync: a chunk lost to a power cut is fetched again, and syncing each would cost more
    # than fetching it
    try:
        atomic.write(path, partial(_fill, data=data), sync=False)
    except FileNotFoundError:  # the dataset's first chunk (folders go only at start-up)
        path.parent.mkdir(exist_ok=True)
        atomic.write(path, partial(_fill, data=data), sync=False)


def _fill(path: Path, data: bytes) -> None:
    """Write ``data`` into the new file ``path``, its blocks reserved first (atomic.allocate)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        atomic.allocate(fd, len(data))
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def reconcile(folder: Path, state: State) -> None:
    """The chunk files under ``folder`` and the index agree again after a crash: index rows
    without a file are dropped, and files without a row (or of a dataset no longer held,
    or half-written temp files) deleted."""
    indexed = state.all_chunks()
    known = state.dataset_ids()
    on_disk: set[tuple[int, int]] = set()
    for sub in folder.iterdir():
        if not sub.name.isdigit() or int(sub.name) not in known:
            shutil.rmtree(sub, ignore_errors=True) if sub.is_dir() else sub.unlink()
            continue
        ds_id = int(sub.name)
        for f in sub.iterdir():
            index, _, digest = f.name.partition(".")
            key = (ds_id, int(index)) if index.isdigit() else None
            if key is not None and indexed.get(key) == digest:
                on_disk.add(key)
            else:
                f.unlink()
    for dataset, idx in indexed.keys() - on_disk:
        state.drop_chunks(dataset, [idx])
