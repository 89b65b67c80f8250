"""Prometheus metrics, shared by every service: one registry per running service (several
apps share a test process: nothing is process-wide), a ``GET /metrics`` answer, and the
separate metrics listener (``--metrics HOST:PORT``).

Metric values are read from the service's own counters when Prometheus scrapes (a
``Collector`` per role: publisher/metrics.py, subscriber/metrics.py, broker/metrics.py), so
serving a chunk costs no metric call at all. Who may scrape:

    the service's own port   GET /metrics, behind what guards every route there: a service
                             token with --require-token; with --auth (subscriber) a login
                             whose user is granted every followed root, as for /v1/stats
    --metrics HOST:PORT      GET /metrics alone, on another address, without auth: bind it
                             where only the scraper reaches (127.0.0.1 unless told)
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable, Iterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from caterva import __version__
from caterva.config import parse_hostport, setting
from caterva.errors import BadRequest
from caterva.service import runner

log = logging.getLogger("caterva.metrics")

PATH = "/metrics"
HEAD_BYTES = 8192  # the most of a request head the metrics listener reads
READ_TIMEOUT = 5.0  # seconds a scraper has to send its request head


class Info(Collector):
    """``caterva_info{role, version} 1``: which service and version answer here."""

    def __init__(self, role: str) -> None:
        self.role = role

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "caterva_info", "The caterva service answering here", labels=["role", "version"]
        )
        info.add_metric([self.role, __version__], 1)
        yield info


def registry(role: str, collectors: Iterable[Collector]) -> CollectorRegistry:
    """A registry of its own for one service: ``caterva_info`` and ``collectors``."""
    # auto_describe off: a collector is not run once more just to learn its names
    found = CollectorRegistry(auto_describe=False)
    for collector in (Info(role), *collectors):
        found.register(collector)
    return found


def answer(registry: CollectorRegistry) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


DOC = {
    "response_class": Response,
    "responses": {
        200: {
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
            "description": "Prometheus text format (README: Operations).",
        }
    },
}


# --- the separate listener -------------------------------------------------------------------


async def _serve_one(
    registry: CollectorRegistry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One request, one answer, then close: all a scraper needs, and nothing to keep."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        method, target = (head.split(b" ", 2) + [b"", b""])[:2]
        if method in (b"GET", b"HEAD") and target.split(b"?")[0] == PATH.encode():
            status, body, kind = b"200 OK", generate_latest(registry), CONTENT_TYPE_LATEST
        else:
            status, body, kind = b"404 Not Found", b"only GET /metrics here\n", "text/plain"
        writer.write(
            b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (status, kind.encode(), len(body))
        )
        if method != b"HEAD":
            writer.write(body)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
        pass  # a scraper that went away or sent too much: nothing to answer
    finally:
        writer.close()


async def listen(sock: socket.socket, registry: CollectorRegistry) -> asyncio.Server:
    """Serve ``registry`` on ``sock`` (bound by the caller) until the server is closed."""
    server = await asyncio.start_server(partial(_serve_one, registry), sock=sock, limit=HEAD_BYTES)
    host, port = sock.getsockname()[:2]
    log.info("metrics on http://%s:%d%s", host, port, PATH)
    return server


def bind(flag: str | None) -> socket.socket | None:
    """The socket of ``--metrics HOST:PORT`` (the setting ``metrics``), or None: bound now,
    so a taken port fails the start with a clear message."""
    address = setting("metrics", flag)
    if not address:
        return None
    host, port = parse_hostport(address, 0)
    if not port:
        raise BadRequest(f"--metrics {address!r} names no port: use HOST:PORT")
    return runner.bind(host, port)


def listen_apart(app: FastAPI, sock: socket.socket | None) -> None:
    """Also serve the app's metrics (lifespan state ``metrics``: a registry) on ``sock``,
    without auth, for as long as the app runs."""
    if sock is None:
        return
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with inner(app) as state:
            server = await listen(sock, state["metrics"])
            try:
                yield state
            finally:
                server.close()

    app.router.lifespan_context = lifespan
