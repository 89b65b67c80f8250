"""Run an ASGI app under uvicorn: bind first (so port 0 works and a taken port is a clear
error), print one ready line for humans and test harnesses, shut down on SIGINT/SIGTERM."""

from __future__ import annotations

import ctypes
import socket
import sys

import uvicorn

from caterva.child import ready_line
from caterva.errors import Unavailable


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


def ready(service: str, url: str) -> None:
    """The line whoever started us waits for (caterva/child.py)."""
    print(ready_line(service, url), flush=True)


def return_big_buffers(threshold: int = 1 << 20) -> None:
    """Have glibc give buffers of ``threshold`` bytes or more straight back to the OS on free.

    By default it raises that threshold to the size of the largest buffer freed so far, then
    keeps such buffers (chunks, selections) in per-thread arenas: a service's resident memory
    grew to hold its biggest past requests, once per worker thread. Elsewhere: a no-op.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, threshold)  # -3: M_MMAP_THRESHOLD
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


def run(
    app, sock: socket.socket, *, log_level: str = "warning", tls: tuple[str, str] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM; HTTPS when ``tls`` is (certificate file, key file)."""
    return_big_buffers()
    # a long download still open at SIGTERM gets this long to finish (uvicorn's default: forever)
    config = uvicorn.Config(
        app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=5,
        ssl_certfile=tls[0] if tls else None, ssl_keyfile=tls[1] if tls else None,
    )
    server = _Server(config)
    server.run(sockets=[sock])
    if not server.started:  # the lifespan refused to start: its error was logged
        sys.exit(1)
