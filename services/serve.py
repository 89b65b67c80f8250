"""Run an ASGI app under uvicorn: bind first (so port 0 works and a taken port is a clear
error), print one ready line for humans and test harnesses, shut down on SIGINT/SIGTERM."""

from __future__ import annotations

import socket
import sys

import uvicorn

from caterva.errors import Unavailable


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
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
    """The line a harness waits for: ``caterva <service> ready <url>``."""
    print(f"caterva {service} ready {url}", flush=True)


class _Server(uvicorn.Server):
    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        # a clean shutdown exits 0 (uvicorn would re-raise the signal once done)
        self._captured_signals.clear()
        # endless streams (the subscriber's /events) end now, not at the grace timeout
        for callback in getattr(self.config.app.state, "on_exit", ()):
            callback()


def run(app, sock: socket.socket, *, log_level: str = "warning") -> None:
    # a long download still open at SIGTERM gets this long to finish (uvicorn's default: forever)
    config = uvicorn.Config(
        app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    server = _Server(config)
    server.run(sockets=[sock])
    if not server.started:  # the lifespan refused to start: its error was logged
        sys.exit(1)
