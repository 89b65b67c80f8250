"""The threads a client decodes chunk frames on, as they arrive (a Call with ``take``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future


class Decoders:
    """A client's threads taking chunk frames: one per core, as decompressing is CPU work done
    without the GIL (protocol/gather.py). Started by the first read that needs them, so a
    process that never reads chunks (the CLI) never pays for them."""

    def __init__(self) -> None:
        self._pool: Executor | None = None
        self._lock = threading.Lock()

    def frames(self, take: Callable[[int, str, bytes], None]) -> Frames:
        with self._lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(
                    os.cpu_count() or 1, thread_name_prefix="caterva-decode"
                )
        return Frames(self._pool, take)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class Frames:
    """A Call's frames handed to its ``take`` on ``pool``'s threads as they arrive: the answer
    of that Call, which the program waits for with ``finish``."""

    def __init__(self, pool: Executor, take: Callable[[int, str, bytes], None]) -> None:
        self.pool, self.take = pool, take
        self.pending: list[Future] = []

    def submit(self, frames: list[tuple[int, str, bytes]]) -> None:
        self.pending += [self.pool.submit(self.take, *frame) for frame in frames]

    def finish(self) -> None:
        """Wait for every frame to be taken; the first error is raised (and the frames not
        taken yet are dropped: they do not outlive the read that failed)."""
        try:
            for job in self.pending:
                job.result()
        finally:
            self.cancel()

    def cancel(self) -> None:
        for job in self.pending:
            job.cancel()
