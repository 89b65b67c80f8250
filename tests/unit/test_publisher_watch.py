"""The publisher's watcher: filesystem events lead to a look at just the paths they name,
with a full scan only as the safety net (and every scan_interval when polling)."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
from dataclasses import replace

import blosc2
import pytest

from caterva.publisher.app import watch
from caterva.publisher.catalog import Catalog
from caterva.publisher.notify import Changes
from caterva.publisher.settings import Settings
from tests.unit.test_publisher_catalog import make_array, rewrite_rows


class Announcer:
    """Records every change the watcher reports, path by path."""

    def __init__(self) -> None:
        self.ops: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def changed(self, result) -> None:
        for d in result.diffs:
            self.ops.put_nowait((d.op, d.path))

    async def next(self, n: int, timeout: float = 5) -> list[tuple[str, str]]:
        return sorted([await asyncio.wait_for(self.ops.get(), timeout) for _ in range(n)])


def in_loop(test):
    """Runs an async test in its own event loop (the watcher's tasks live there)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        asyncio.run(test(*args, **kwargs))

    return run


@pytest.fixture
def root(tmp_path):
    d = tmp_path / "root"
    (d / "sub").mkdir(parents=True)
    make_array(d / "a.b2nd")
    make_array(d / "sub" / "b.b2nd")
    return d


def settings(root, tmp_path, **kw) -> Settings:
    return Settings(
        name="demo", directory=root, statedir=tmp_path / "state", broker="", url="", **kw
    )


async def watching(root, tmp_path, poll: bool):
    catalog = Catalog("demo", root, tmp_path / "state" / "frames")
    catalog.scan()
    changes = Changes(root, tmp_path / "state")
    assert poll or changes.start()
    announcer = Announcer()
    config = replace(settings(root, tmp_path), scan_interval=0.05, poll=poll)
    task = asyncio.create_task(watch(catalog, announcer, config, None if poll else changes))
    return catalog, announcer, task, changes


@in_loop
async def test_events_are_handled_without_walking_the_directory(root, tmp_path):
    catalog, announcer, task, changes = await watching(root, tmp_path, poll=False)
    try:
        rewrite_rows(root / "a.b2nd", slice(0, 2), -1.0)  # written in place
        assert await announcer.next(1) == [("update", "a.b2nd")]
        still_open = blosc2.open(str(root / "a.b2nd"), mode="a")
        still_open[30:32] = -2.0  # a writer that keeps its file open: no close event
        assert await announcer.next(1) == [("update", "a.b2nd")]
        del still_open
        make_array(root / ".c.b2nd.tmp")
        os.replace(root / ".c.b2nd.tmp", root / "sub" / "c.b2nd")  # written aside, renamed
        assert await announcer.next(1) == [("create", "sub/c.b2nd")]
        os.rename(root / "sub" / "b.b2nd", root / "b2.b2nd")
        assert await announcer.next(2) == [("create", "b2.b2nd"), ("delete", "sub/b.b2nd")]
        (root / "new" / "deep").mkdir(parents=True)  # a new directory is watched at once
        make_array(root / "new" / "deep" / "d.b2nd")
        assert await announcer.next(1) == [("create", "new/deep/d.b2nd")]
        shutil.rmtree(root / "sub")
        assert await announcer.next(1) == [("delete", "sub/c.b2nd")]
        os.rename(root / "new", root / "moved")  # a directory renamed: its files with it
        assert await announcer.next(2) == [
            ("create", "moved/deep/d.b2nd"),
            ("delete", "new/deep/d.b2nd"),
        ]
        assert catalog.walks == 1  # the first scan only
        assert sorted(catalog.manifest.by_path()) == ["a.b2nd", "b2.b2nd", "moved/deep/d.b2nd"]
    finally:
        task.cancel()
        changes.close()


@in_loop
async def test_polling_still_finds_changes(root, tmp_path):
    catalog, announcer, task, _ = await watching(root, tmp_path, poll=True)
    try:
        rewrite_rows(root / "a.b2nd", slice(0, 2), -1.0)
        assert await announcer.next(1) == [("update", "a.b2nd")]
        assert catalog.walks > 1
    finally:
        task.cancel()


@in_loop
async def test_a_full_scan_still_runs_every_rescan_interval(root, tmp_path):
    catalog = Catalog("demo", root, tmp_path / "state" / "frames")
    catalog.scan()
    changes = Changes(root, tmp_path / "state")  # never started: no event ever comes
    config = replace(settings(root, tmp_path), rescan_interval=0.05)
    announcer = Announcer()
    task = asyncio.create_task(watch(catalog, announcer, config, changes))
    try:
        (root / "c.dat").write_bytes(b"x")
        assert await announcer.next(1) == [("create", "c.dat")]
    finally:
        task.cancel()
