"""The handoff's writes run in worker threads, which cannot be stopped: a handoff cancelled
(the subscriber stopping) must not go on to close the client's descriptor while a thread
still writes into it (a number the process may hand to another file at once)."""

from __future__ import annotations

import asyncio
import threading

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
