"""The handoff's writes run in worker threads, which cannot be stopped: a handoff cancelled
(the subscriber stopping) must not go on to close the client's descriptor while a thread
still writes into it (a number the process may hand to another file at once). Each write goes
through a buffer: what lands is exactly the pieces, in order, wherever the buffer fills."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from caterva.errors import ProtocolError
from caterva.subscriber import handoff


class Client:  # the connection: there, with nothing to say
    def recv(self, size, flags):
        raise BlockingIOError

    def send(self, data, flags):
        return len(data)


class File:  # two windows' worth of bytes
    size = 2 * handoff.FLUSH_BYTES
    filename = "x.b2nd"

    async def read(self, start, stop):
        yield b"x" * handoff.FLUSH_BYTES
        yield b"y" * handoff.FLUSH_BYTES


def test_a_cancelled_handoff_waits_for_its_writing_threads(monkeypatch):
    started, release = threading.Semaphore(0), threading.Event()
    order: list[str] = []

    def write_all(batch, fd, at):  # writes the disk is slow to take
        started.release()
        release.wait(10)
        order.append("thread done")
        return at + len(batch[0])

    monkeypatch.setattr(handoff, "_write_all", write_all)

    async def main() -> None:
        task = asyncio.create_task(handoff._write(File(), 99, Client()))
        for _ in range(2):  # both windows' writes under way at once
            assert await asyncio.to_thread(started.acquire, True, 10)
        task.cancel()
        try:
            for _ in range(5):  # loop turns: the cancellation is delivered at the first
                await asyncio.sleep(0)
            assert not task.done()  # the threads are still writing
        finally:
            release.set()
        try:
            await task
        except asyncio.CancelledError:
            order.append("handoff cancelled")

    asyncio.run(main())
    assert order == ["thread done", "thread done", "handoff cancelled"]


def test_the_writes_land_where_their_bytes_go(monkeypatch):
    calls: list[tuple[bytes, int]] = []

    def write_all(batch, fd, at):
        calls.append((batch[0][:1], at))
        return at + len(batch[0])

    monkeypatch.setattr(handoff, "_write_all", write_all)
    assert asyncio.run(handoff._write(File(), 99, Client())) == File.size
    assert sorted(calls) == [(b"x", 0), (b"y", handoff.FLUSH_BYTES)]


def test_a_write_through_its_buffer_is_the_bytes_in_order(tmp_path, monkeypatch):
    """Chunk files and bytes, across buffer boundaries (a buffer of 7 bytes), land exactly."""
    monkeypatch.setattr(handoff, "_spare", [])
    monkeypatch.setattr(handoff, "COPY_BYTES", 7)
    pieces = [b"head-", b"0123456789abcdefghij", b"", b"Z" * 30, b"x", b"-tail"]
    batch = []
    for n, data in enumerate(pieces):
        if n in (1, 3, 4):  # cached chunks: a part of a file, not all of it
            path = tmp_path / f"{n}.chunk"
            path.write_bytes(b"<<" + data + b">>")
            batch.append(handoff.FilePart(open(path, "rb", buffering=0), 2, len(data)))  # noqa: SIM115
        else:
            batch.append(data)
    target = tmp_path / "out"
    target.write_bytes(b"?" * 3)
    fd = os.open(target, os.O_RDWR)
    try:
        end = handoff._write_all(batch, fd, 3)
    finally:
        os.close(fd)
    assert target.read_bytes() == b"???" + b"".join(pieces)
    assert end == 3 + sum(map(len, pieces))
    assert all(piece.file.closed for piece in batch if isinstance(piece, handoff.FilePart))
    assert len(handoff._spare) == 1  # the buffer is kept for the next write


def test_a_chunk_file_shorter_than_its_part_fails_the_write(tmp_path):
    path = tmp_path / "0.chunk"
    path.write_bytes(b"abc")
    part = handoff.FilePart(open(path, "rb", buffering=0), 1, 5)  # noqa: SIM115
    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(ProtocolError, match="shorter than expected"):
            handoff._write_all([part], fd, 0)
    finally:
        os.close(fd)
    assert part.file.closed


def test_any_bytes_like_piece_is_written_as_bytes(tmp_path):
    target = tmp_path / "out"
    fd = os.open(target, os.O_RDWR | os.O_CREAT)
    try:
        handoff._write_all([bytearray(b"abc"), memoryview(b"def"), b"ghi"], fd, 0)
    finally:
        os.close(fd)
    assert target.read_bytes() == b"abcdefghi"


def test_a_spare_buffer_another_write_took_meanwhile_is_made_anew(tmp_path, monkeypatch):
    class Raced(list):  # seen holding one, taken by another thread before this one's pop
        def __bool__(self) -> bool:
            return True

    monkeypatch.setattr(handoff, "_spare", Raced())
    target = tmp_path / "out"
    fd = os.open(target, os.O_RDWR | os.O_CREAT)
    try:
        assert handoff._write_all([b"abc"], fd, 0) == 3
    finally:
        os.close(fd)
    assert target.read_bytes() == b"abc"
