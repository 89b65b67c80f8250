"""Run an ASGI app under uvicorn: bind first (so port 0 works and a taken port is a clear
error), print one ready line for humans and test harnesses (saying too whether the MQTT
broker is connected), shut down on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import ctypes
import socket
import sys
from collections.abc import Sequence

import uvicorn

from caterva import logs
from caterva.child import ready_line
from caterva.errors import BrokerUnavailable, Unavailable
from caterva.mqtt import Bus
from caterva.service import zerocopy

BROKER_WAIT = 1.0  # seconds the ready line waits for a broker (a reachable one takes ms)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: accepted sockets copy it, and only then does asyncio turn Nagle off
    # (TCP_NODELAY); without it a keep-alive response waits ~40 ms for a delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, scheme: str = "http") -> str:
    host, port = sock.getsockname()[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def ready(service: str, url: str, note: str = "") -> None:
    """The line whoever started us waits for (caterva/child.py)."""
    print(ready_line(service, url, note), flush=True)


async def ready_with_brokers(service: str, url: str, buses: Sequence[Bus]) -> None:
    """The ready line (HTTP is up), once each broker is connected or BROKER_WAIT has passed:
    it says which are. Those that connect later say so in the log (caterva/mqtt.py)."""

    async def state(bus: Bus) -> str:
        try:
            await bus.wait_connected(BROKER_WAIT)
        except BrokerUnavailable:
            return f"broker {bus.url} not connected"
        return f"broker {bus.url} connected"

    ready(service, url, ", ".join(await asyncio.gather(*map(state, buses))))


# glibc malloc settings (mallopt parameter numbers from malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
KEEP = 16 << 20  # the heap keeps up to this many free bytes for the next buffers
# buffers up to this size come from the heap (glibc's most): a .npy answer (up to 16 MiB in the
# benchmark) then reuses the KEEP bytes kept free instead of mapping fresh pages beside them
HEAP_MOST = 32 << 20
ARENAS = 1


def tune_malloc() -> None:
    """Reuse chunk-sized buffers instead of asking the OS for fresh pages each time.

    A service allocates and frees a buffer per chunk (often MiBs) at every hop. Taken from
    and given back to the OS each time (mmap/munmap), every page of every buffer faults on
    first touch: that was a third of a cold download's CPU. Buffers up to HEAP_MOST bytes now
    come from the heap, an arena keeps up to KEEP bytes free for the next request, and worker
    threads share ARENAS arenas instead of one each, so what is kept stays bounded (about
    ARENAS x KEEP; a second arena bought no measurable speed and cost 20 MiB of peak
    resident memory). Elsewhere than glibc: a no-op.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, HEAP_MOST)
        libc.mallopt(_M_TRIM_THRESHOLD, KEEP)
        libc.mallopt(_M_ARENA_MAX, ARENAS)
    except (OSError, AttributeError):
        pass


class _Server(uvicorn.Server):
    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        # a clean shutdown exits 0 (uvicorn would re-raise the signal once done)
        self._captured_signals.clear()
        # endless streams (the subscriber's /events) end now, not at the grace timeout
        for callback in getattr(self.config.app.state, "on_exit", ()):
            callback()


def run(app, sock: socket.socket, *, tls: tuple[str, str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; HTTPS when ``tls`` is (certificate file, key file)."""
    tune_malloc()
    # no log config or level of uvicorn's own: its records go through ours (caterva/logs.py)
    # a long download still open at SIGTERM gets this long to finish (uvicorn's default: forever)
    config = uvicorn.Config(
        app,
        http=zerocopy.protocol(),  # /file sends cached chunk files with sendfile
        log_config=None,
        log_level=None,
        access_log=logs.access_enabled(),
        lifespan="on",
        ws="none",  # no websockets here: uvicorn would import an implementation at start
        timeout_graceful_shutdown=5,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    server = _Server(config)
    server.run(sockets=[sock])
    if not server.started:  # the lifespan refused to start: its error was logged
        sys.exit(1)
