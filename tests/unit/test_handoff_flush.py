"""The handoff's writes run in a worker thread, which cannot be stopped: a handoff cancelled
(the subscriber stopping) must not go on to close the client's descriptor while that thread
still writes into it (a number the process may hand to another file at once)."""

from __future__ import annotations

import asyncio
import threading

from caterva.subscriber import handoff


def test_a_cancelled_flush_waits_for_its_writing_thread(monkeypatch):
    started, release = threading.Event(), threading.Event()
    order: list[str] = []

    def write_all(batch, fd, at):  # a write the disk is slow to take
        started.set()
        release.wait(10)
        order.append("thread done")
        return at + 1

    monkeypatch.setattr(handoff, "_write_all", write_all)

    class Client:  # the connection: there, with nothing to say
        def recv(self, size, flags):
            raise BlockingIOError

        def send(self, data, flags):
            return len(data)

    async def main() -> None:
        task = asyncio.create_task(handoff._flush([b"x"], 99, 0, Client()))
        await asyncio.to_thread(started.wait, 10)
        task.cancel()
        try:
            for _ in range(5):  # loop turns: the cancellation is delivered at the first
                await asyncio.sleep(0)
            assert not task.done()  # the thread is still writing
        finally:
            release.set()
        try:
            await task
        except asyncio.CancelledError:
            order.append("flush cancelled")

    asyncio.run(main())
    assert order == ["thread done", "flush cancelled"]
