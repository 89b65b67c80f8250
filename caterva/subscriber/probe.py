"""Probe over HTTP the sources whose MQTT presence cannot be trusted (``Directory.unheard``:
our link to their broker is down, or no news of them for presence_ttl), so their state is
learned by probe: a publisher whose last will died with a broker node is still found offline
once it stops answering, and one cut off from the broker is still read from.

A probe is one GET of the source's /v1/health, bounded in time; it answers when it says it is
the source probed (its pub_id, or its mirror's), or refuses us (401/403: alive, guarded).
Probes run in the background, a few at a time. A source that answers is probed again about
every presence_ttl; one that does not, after 1, 2, 4 ... s, never more than presence_ttl; each
delay is jittered (x0.5-1) so that subscribers cut off together do not probe in step.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import httpx

from caterva.errors import CatervaError, SourceRefused
from caterva.subscriber.discovery import Directory
from caterva.subscriber.upstream import Source

log = logging.getLogger("caterva.subscriber")

TIMEOUT = 5.0  # seconds a probe may take: a source slower than this does not answer
AT_ONCE = 8  # probes in flight at most
FIRST_RETRY = 1.0  # seconds before a source that did not answer is probed again (doubling)
TICK = 1.0  # seconds between looks at which sources are due


async def answers(client: httpx.AsyncClient, pub_id: str, url: str) -> bool:
    """Does the source ``pub_id`` answer at ``url``?"""
    try:
        async with asyncio.timeout(TIMEOUT):
            health = await Source(client, url).health()
    except SourceRefused:
        return True  # it answers, to those it knows
    except (CatervaError, TimeoutError):
        return False
    mirror = health.get("mirror")
    names = {health.get("pub_id"), mirror.get("pub_id") if isinstance(mirror, dict) else None}
    return pub_id in names  # another service at that URL now is not that source


def backoff(ok: bool, failures: int, ttl: float) -> float:
    """Seconds until the next probe of a source (before jitter)."""
    return ttl if ok else min(ttl, FIRST_RETRY * 2 ** (failures - 1))


class Prober:
    def __init__(
        self,
        directory: Directory,
        client: httpx.AsyncClient,
        ask: Callable[[httpx.AsyncClient, str, str], Awaitable[bool]] = answers,
    ) -> None:
        self.directory, self.client, self.ask = directory, client, ask
        self._slots = asyncio.Semaphore(AT_ONCE)
        self._due: dict[tuple[str, str], float] = {}  # (pub_id, url) -> next probe
        self._failures: dict[tuple[str, str], int] = {}  # -> probes unanswered in a row
        self._tasks: dict[tuple[str, str], asyncio.Task] = {}

    async def run(self) -> None:
        """Probe what is due, every TICK, until cancelled."""
        try:
            while True:
                self.due()
                await asyncio.sleep(TICK)
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def due(self) -> None:
        """Start a probe of every unheard source whose turn it is; forget the others."""
        unheard = self.directory.unheard()
        for key in [k for k in self._due if k not in unheard]:  # trusted again, or gone
            self._due.pop(key)
            self._failures.pop(key, None)
        now = time.monotonic()
        for key in unheard:
            if key not in self._tasks and self._due.get(key, now) <= now:
                self._tasks[key] = asyncio.create_task(self._probe(*key))

    async def _probe(self, pub_id: str, url: str) -> None:
        key = (pub_id, url)
        try:
            async with self._slots:
                ok = await self.ask(self.client, pub_id, url)
            self.directory.probed(pub_id, url, ok)
            failures = 0 if ok else self._failures.get(key, 0) + 1
            self._failures[key] = failures
            delay = backoff(ok, failures, self.directory.presence_ttl)
            self._due[key] = time.monotonic() + delay * random.uniform(0.5, 1.0)
        finally:
            self._tasks.pop(key, None)
