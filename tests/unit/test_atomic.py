"""caterva/atomic.py: a file is replaced or created whole or not at all, with the mode asked."""

from __future__ import annotations

import os
import stat

import pytest

from caterva import atomic


def listing(path):
    return sorted(p.name for p in path.iterdir())


@pytest.mark.parametrize("sync", [True, False])
def test_write_replaces_the_file_whole(tmp_path, sync):
    target = tmp_path / "f"
    assert atomic.write(target, b"old", sync=sync)
    assert atomic.write(target, "new text", sync=sync)
    assert target.read_text() == "new text" and listing(tmp_path) == ["f"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    seen = []

    def half(tmp):
        seen.append(tmp.name)
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic.write(target, half)
    assert seen[0].startswith(".f.") and seen[0].endswith(".tmp")  # hidden: never published
    assert target.read_bytes() == b"old" and listing(tmp_path) == ["f"]


def test_a_writer_function_writes_the_file_itself(tmp_path):
    target = tmp_path / "frame"
    atomic.write(target, lambda tmp: tmp.write_bytes(b"made by a library"))
    assert target.read_bytes() == b"made by a library" and listing(tmp_path) == ["frame"]


def test_a_secret_is_owner_only_from_the_start(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write(tmp_path / "secret", "k", mode=0o600)
        atomic.write(tmp_path / "plain", "p")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o644


def test_keep_leaves_an_existing_file(tmp_path):
    target = tmp_path / "f"
    assert atomic.write(target, "first", keep=True)
    assert not atomic.write(target, "second", keep=True)
    assert target.read_text() == "first" and listing(tmp_path) == ["f"]


def test_a_missing_directory_is_an_error_not_a_stray_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic.write(tmp_path / "no" / "f", b"x")
    assert listing(tmp_path) == []


def test_allocate_reserves_the_blocks_a_write_then_fills(tmp_path):
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        atomic.allocate(fd, 0)  # nothing to reserve
        assert os.fstat(fd).st_size == 0
        atomic.allocate(fd, 1 << 20)
        assert os.fstat(fd).st_size == 1 << 20  # reserved (tmp_path is on a file system with it)
        os.write(fd, b"x" * (1 << 20))
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * (1 << 20)
