"""Child processes on loopback, their readiness and their memory.

Every service binds port 0 and prints one ready line (``caterva <svc> ready <url>``, or
``static ready <url>``); we wait for that line, never for a fixed time. stderr goes to a log
file in the run directory, shown when a service fails to start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from caterva.child import Child

REPO = Path(__file__).resolve().parents[1]


def add_workdir(parser: argparse.ArgumentParser) -> None:
    """Every benchmark's ``--workdir``: where data is made once and kept between runs."""
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "caterva-bench",
        help="data cache and scratch space (default $TMPDIR/caterva-bench)",
    )


# One worker, sendfile, no logging: a plain static file server at its best.
NGINX_CONF = """
{user}
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process(Child):
    """A child that prints its ready line (or, given ``port``, that listens on it: nginx)."""

    def __init__(
        self, name: str, program: list[str], rundir: Path, env=None, port: int | None = None
    ) -> None:
        super().__init__(
            [],
            rundir / f"{name}.log",
            program=program,
            cwd=REPO,
            env={"CATERVA_CONFIG": "/nonexistent", **(env or {})},
        )
        self.name, self.port = name, port

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 120) -> str:
        if self.port is not None:
            self._wait_listening(timeout)
        return super().wait_ready(timeout)

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.01)
                continue
            self.url = f"http://127.0.0.1:{self.port}"
            self._ready.set()
            return

    def memory(self) -> dict[str, int]:
        """Peak (VmHWM) and current (VmRSS) resident bytes, from /proc."""
        return memory_of(self.pid)


def memory_of(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


class Services:
    """Starts and stops a set of Processes; stops them all on exit, last started first."""

    def __init__(self, rundir: Path) -> None:
        self.rundir = rundir
        self.started: list[Process] = []

    def start(self, name: str, module: str, *args: str, env=None) -> Process:
        return self.launch(Process(name, [sys.executable, "-m", module, *args], self.rundir, env))

    def launch(self, process: Process) -> Process:
        """Start ``process`` (any program) under this set, and wait until it is ready."""
        self.started.append(process)
        process.wait_ready()
        return process

    def nginx(self, directory: Path) -> Process | None:
        """nginx serving ``directory`` with sendfile, when installed: the strongest baseline."""
        exe = shutil.which("nginx") or next(
            (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
        )
        if exe is None:
            return None
        port = free_port()
        prefix = self.rundir / "nginx"
        prefix.mkdir()
        (prefix / "nginx.conf").write_text(
            NGINX_CONF.format(
                port=port,
                root=directory.resolve(),
                prefix=prefix,
                user="user root;" if os.geteuid() == 0 else "",
            )
        )
        command = [exe, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
        return self.launch(Process("nginx", command, self.rundir, port=port))

    def broker(self) -> str:
        port = free_port()  # the broker has no port-0 mode that reports its port
        statedir = self.rundir / "broker"
        return self.start(
            "broker", "caterva", "bro", "--port", str(port), "--statedir", str(statedir)
        ).url

    def publisher(self, root: str, directory: Path, broker: str) -> Process:
        return self.start(
            f"pub-{root}",
            "caterva",
            "pub",
            root,
            str(directory),
            "--broker",
            broker,
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(self.rundir / f"pub-{root}"),
        )

    def subscriber(self, name: str, broker: str, cache_size: str = "20GiB") -> Process:
        return self.start(
            name,
            "caterva",
            "sub",
            "--broker",
            broker,
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(self.rundir / name),
            "--cache-size",
            cache_size,
        )

    def stop(self, process: Process) -> None:
        process.stop()
        self.started.remove(process)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()
        self.started.clear()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()


def wait_online(client, roots: list[str], timeout: float = 60) -> None:
    """Until the subscriber has heard every root's announcement (MQTT, asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        online = {r.name for r in client.roots() if r.online}
        if set(roots) <= online:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"roots {sorted(set(roots) - online)} never came online")
        time.sleep(0.02)
