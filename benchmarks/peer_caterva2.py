"""Caterva2 side by side: ``python -m benchmarks.run --peer caterva2``.

Caterva2 2025.6.26 (its last release with a broker, publishers and subscribers) is installed
from the package index into its own virtual environment in the work directory, once, and runs
only as child processes of that environment: it pins its own blosc2, so it is never imported
here. Its broker, a publisher per root and its subscriber bind free loopback ports and keep
their state under their own directory, beside caterva's running services. Its scenarios
(peer_caterva2_scenarios.py) go through its CLI (``cat2cli``, start-up included) and its
Python API (a driver process holding one ``caterva2.Client``, peer_caterva2_driver.py), each
sample right after caterva's (schedule.pair).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import harness

VERSION = "2025.6.26"
# blosc2 as of its release: blosc2 4 opens files in a safe mode that refuses Caterva2's proxy
# caches (UnsafeDeserializationError on every fetch).
REQUIREMENTS = [f"caterva2[services,clients]=={VERSION}", "blosc2==3.5.0"]
DRIVER = Path(__file__).with_name("peer_caterva2_driver.py")

# The subscriber's settings are read from a file only; no accounts, as caterva's runs.
CONF = """\
[subscriber]
urlbase = "{url}"
login = false
"""


def install(workdir: Path, log=print) -> Path:
    """Caterva2's own venv in ``workdir`` (reused when a previous run completed it)."""
    venv = workdir / f"caterva2-{VERSION}"
    done = venv / ".installed"
    if done.exists() and done.read_text().split() == REQUIREMENTS:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    log(f"installing {' '.join(REQUIREMENTS)} into {venv} (a minute or two, once)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    with open(workdir / "caterva2-install.log", "wb") as out:
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *REQUIREMENTS],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )
    done.write_text(" ".join(REQUIREMENTS))
    return venv


def service_command(venv: Path, service: str, port: int, statedir: Path, *args: str) -> list:
    """``cat2bro``/``cat2pub``/``cat2sub`` on loopback ``port``; ``args`` follow the options."""
    return [
        str(venv / "bin" / f"cat2{service}"),
        "--http",
        f"127.0.0.1:{port}",
        "--statedir",
        str(statedir),
        *args,
    ]


def cli_command(venv: Path, sub_url: str, *args: str) -> list[str]:
    return [str(venv / "bin" / "cat2cli"), "--subscriber", sub_url, *args]


def slice_text(key: tuple[slice, ...]) -> str:
    """``cat2cli show`` syntax: ``a:b, c:d``."""
    return ", ".join(f"{k.start}:{k.stop}" for k in key)


def published(statedir: Path) -> int:
    """Datasets a Caterva2 publisher has announced so far (its state file, written atomically)."""
    try:
        return len(json.loads((statedir / "db.json").read_text())["etags"])
    except (OSError, ValueError, KeyError):
        return 0


class Peer:
    """Caterva2's services and its Python-API driver, for one run."""

    def __init__(self, venv: Path, rundir: Path, roots: dict[str, Path]) -> None:
        self.venv, self.rundir, self.roots = venv, rundir, roots
        self.services = harness.Services(rundir)
        self.broker_port = harness.free_port()
        self.sub_port = harness.free_port()  # kept across restarts: the driver keeps its URL
        self.sub_url = f"http://127.0.0.1:{self.sub_port}"
        self.sub: harness.Process | None = None
        self.driver: subprocess.Popen | None = None
        self.followed: set[str] = set()  # by the running subscriber

    def _start(self, name: str, port: int, *args: str) -> harness.Process:
        command = service_command(self.venv, name.split("-")[0], port, self.rundir / name, *args)
        return self.services.launch(harness.Process(name, command, self.rundir, port=port))

    def start(self) -> Peer:
        self._start("bro", self.broker_port)
        broker = f"127.0.0.1:{self.broker_port}"
        for root, directory in self.roots.items():
            self._start(
                f"pub-{root}", harness.free_port(), "--broker", broker, root, str(directory)
            )
            count = sum(1 for p in directory.rglob("*") if p.is_file())
            self._wait(lambda r=root, c=count: published(self.rundir / f"pub-{r}") >= c, root)
        (self.rundir / "caterva2.toml").write_text(CONF.format(url=self.sub_url))
        self.fresh_subscriber()
        with open(self.rundir / "driver.log", "ab") as err:  # the child keeps its own handle
            self.driver = subprocess.Popen(
                self._driver_command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        return self

    @staticmethod
    def _wait(done, what: str, timeout: float = 600) -> None:
        """A publisher announces its datasets one by one after it listens: until all are."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"Caterva2 never published all of {what}")
            time.sleep(0.05)

    def fresh_subscriber(self) -> None:
        """A subscriber with an empty cache: Caterva2's only way to a cold one."""
        if self.sub is not None:
            self.services.stop(self.sub)
        shutil.rmtree(self.rundir / "sub", ignore_errors=True)
        self.followed.clear()
        self.sub = self._start(
            "sub",
            self.sub_port,
            "--broker",
            f"127.0.0.1:{self.broker_port}",
            "--conf",
            str(self.rundir / "caterva2.toml"),
        )

    def follow(self, root: str) -> dict | None:
        """Subscribe to ``root`` unless this subscriber has: the driver's answer, else None."""
        if root in self.followed:
            return None
        answer = self.call("subscribe", root=root)
        self.followed.add(root)
        return answer

    def processes(self) -> dict[str, int]:
        """Its services' pids by name (the subscriber's changes at each fresh start)."""
        driver = {"driver": self.driver.pid} if self.driver is not None else {}
        return {p.name: p.pid for p in self.services.started} | driver

    def call(self, op: str, **args) -> dict:
        """One request to the driver; its answer (``s``: seconds of the timed call)."""
        self.driver.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.driver.stdin.flush()
        answer = json.loads(self.driver.stdout.readline() or '{"error": "driver died"}')
        if "error" in answer:
            raise RuntimeError(f"Caterva2 driver, {op}: {answer['error']}")
        return answer

    def cli(self, *args: str) -> list[str]:
        return cli_command(self.venv, self.sub_url, *args)

    def show(self, path: str, selection: str) -> list[str]:
        """A selection shown by a one-shot process (cat2cli show, fixed: see the driver)."""
        return [*self._driver_command(), "show", path, selection]

    def _driver_command(self) -> list[str]:
        return [str(self.venv / "bin" / "python"), str(DRIVER), self.sub_url]

    def close(self) -> None:
        """Stop everything (again: nothing)."""
        if self.driver is not None:
            self.driver.stdin.close()
            self.driver.wait(30)
            self.driver = None
        self.services.stop_all()


def start(workdir: Path, rundir: Path, roots: dict[str, Path], log) -> Peer:
    """Install (once) and start Caterva2's services and driver, under ``rundir``."""
    venv = install(workdir, log)
    log(f"Caterva2 {VERSION}, side by side")
    peer = Peer(venv, rundir, roots)
    rundir.mkdir()
    try:
        return peer.start()
    except BaseException:
        peer.close()
        raise
