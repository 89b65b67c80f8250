"""Counters of what the publisher served, for ``GET /v1/stats``.

Tests read them to prove what a subscriber fetched (e.g. "only chunk 3 travelled"), so the
field names are part of the contract:

    requests       every HTTP request, whatever its outcome
    errors         responses with status >= 400
    not_modified   manifest requests answered 304
    endpoints      {"manifest"|"info"|"chunk"|"chunks"|"file"|"health"|"stats": requests}
    chunks         chunks served, single and batched
    chunk_bytes    compressed bytes of those chunks
    datasets       {path: chunks served from it}

Also kept for /metrics (publisher/metrics.py), not in the snapshot: responses by status class
(``classes``, {2: n, 4: n, ...}) and chunks and their bytes by route (``by_route``,
{"chunk"|"chunks": [chunks, bytes]}).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # handlers run in a thread pool
        self.requests = 0
        self.errors = 0
        self.not_modified = 0
        self.chunks = 0
        self.chunk_bytes = 0
        self.endpoints: Counter[str] = Counter()
        self.datasets: Counter[str] = Counter()
        self.classes: Counter[int] = Counter()
        self.by_route = {"chunk": [0, 0], "chunks": [0, 0]}

    def response(self, status: int) -> None:
        with self._lock:
            self.requests += 1
            self.errors += status >= 400
            self.not_modified += status == 304
            self.classes[status // 100] += 1

    def endpoint(self, name: str) -> None:
        with self._lock:
            self.endpoints[name] += 1

    def chunk(self, path: str, nbytes: int, route: str = "chunks") -> None:
        with self._lock:
            self.chunks += 1
            self.chunk_bytes += nbytes
            self.datasets[path] += 1
            counts = self.by_route[route]
            counts[0] += 1
            counts[1] += nbytes

    def for_metrics(self) -> tuple[dict[int, int], int, dict[str, tuple[int, int]]]:
        """(responses by status class, errors, (chunks, bytes) by route), consistent."""
        with self._lock:
            routes = {route: (n[0], n[1]) for route, n in self.by_route.items()}
            return dict(self.classes), self.errors, routes

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "errors": self.errors,
                "not_modified": self.not_modified,
                "endpoints": dict(self.endpoints),
                "chunks": self.chunks,
                "chunk_bytes": self.chunk_bytes,
                "datasets": dict(self.datasets),
            }


class StatsMiddleware:
    """Counts every response by status, including 404s for unknown routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stats = scope.get("state", {}).get("stats") if scope["type"] == "http" else None
        if stats is None:
            await self.app(scope, receive, send)
            return
        counted = False

        async def counting_send(message: Message) -> None:
            nonlocal counted
            if message["type"] == "http.response.start" and not counted:
                counted = True
                stats.response(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if not counted:  # failed before answering: the error middleware answers 500
                stats.response(500)
