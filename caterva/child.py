"""A service as a child process, and the one line that says it is ready.

Every service prints ``caterva <service> ready <url>`` on stdout once it accepts requests
(``ready_line``), perhaps followed by a note for humans: ``(broker mqtt://... connected)``.
Whoever starts one (``caterva demo``, the tests, the benchmarks) waits for that line instead
of sleeping, and a service bound to port 0 tells its real port that way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from caterva.errors import Unavailable


def ready_line(service: str, url: str, note: str = "") -> str:
    return f"caterva {service} ready {url}" + (f" ({note})" if note else "")


def parse_ready(line: str) -> str | None:
    """The URL of a ready line, else None."""
    parts = line.split()
    if len(parts) >= 4 and parts[0] == "caterva" and parts[2] == "ready":
        return parts[3]
    return None


class Child:
    """``python -m caterva ARGS`` (or ``program + ARGS``); stderr goes to ``log``."""

    def __init__(
        self,
        args: list[str],
        log: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        program: list[str] | None = None,
    ) -> None:
        self.args = args
        self.log_path = log
        self.name = args[0] if args else (program or ["caterva"])[-1]
        with open(log, "ab") as err:  # the child keeps its own handle
            self.proc = subprocess.Popen(
                [*(program or [sys.executable, "-m", "caterva"]), *args],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
            )
        self.url: str | None = None
        self.lines: list[str] = []  # everything it printed on stdout
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            url = parse_ready(line)
            if url and not self.url:
                self.url = url
                self._ready.set()
        self._ready.set()  # it exited: unblock the waiter

    def wait_ready(self, timeout: float = 60) -> str:
        self._ready.wait(timeout)
        if not self.url:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise Unavailable(f"`{self.name}` never got ready:\n{tail}")
        return self.url

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signal it, wait, kill it if it will not go; returns its exit code."""
        self.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> int:
        return self.stop(signal.SIGKILL)
