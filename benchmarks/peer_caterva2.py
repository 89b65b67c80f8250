"""Caterva2 side by side: ``python -m benchmarks.run --peer caterva2``.

Caterva2 2025.6.26 (its last release with a broker, publishers and subscribers) is installed
from the package index into its own virtual environment in the work directory, once, and runs
only as child processes of that environment: it pins its own blosc2, so it is never imported
here. Its broker, a publisher per root and its subscriber bind free loopback ports; the same
scenarios as caterva's run through its CLI (``cat2cli``, start-up included) and its Python API
(a driver process holding one ``caterva2.Client``, peer_caterva2_driver.py). Every result is
verified against the original files once, outside the timings.

Caterva2 has no unfollow: a cold cache is a fresh subscriber (stopped, its state directory
wiped, started again on the same port), untimed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import data, harness
from benchmarks.result import Result, describe, timed

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
        self.sub = self._start(
            "sub",
            self.sub_port,
            "--broker",
            f"127.0.0.1:{self.broker_port}",
            "--conf",
            str(self.rundir / "caterva2.toml"),
        )

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
        if self.driver is not None:
            self.driver.stdin.close()
            self.driver.wait(30)
        self.services.stop_all()


class Scenarios:
    """Caterva2's side of every row; results are named after caterva's for the table."""

    def __init__(self, peer: Peer, layout: data.Layout, scratch: Path, repeat: int, log) -> None:
        self.peer, self.layout, self.scratch, self.repeat = peer, layout, scratch, repeat
        self.log = log
        self.results: list[Result] = []

    def record(self, result: Result) -> None:
        self.log(f"  Caterva2: {describe(result)}")
        self.results.append(result)

    def run(self) -> list[Result]:
        stems = ("smooth", "noise")
        cold = {k: Result(f"download_{k}_cold", f"download {k}, cold") for k in stems}
        select_cold = Result("select_cli_cold", "select 8 chunks, CLI, cold")
        for _ in range(self.repeat):  # one fresh subscriber per cold sample of each dataset
            self._cold_big()
            select_cold.times.append(self._show())
            cold["noise"].times.append(self._download("noise", cold["noise"]))
            self._cold_big()
            cold["smooth"].times.append(self._download("smooth", cold["smooth"]))
        select_cold.verified = self._show_verified()
        self.record(select_cold)
        for k in stems:
            self.record(cold[k])
            for cli in (True, False):
                self.download_warm(k, cli)
        self.select_warm()
        self.many()
        self.cli_roots()
        return self.results

    def _cold_big(self) -> None:
        self.peer.fresh_subscriber()
        self.peer.call("subscribe", root="big")

    def _download(self, stem: str, result: Result, cli: bool = False) -> float:
        """One timed download of big/STEM.b2nd; verified (once per result) untimed."""
        dest = self.scratch / f"{stem}.b2nd"
        dest.unlink(missing_ok=True)
        path = f"big/{stem}.b2nd"
        if cli:
            command = self.peer.cli("download", path, str(dest))
            seconds = timed(lambda: subprocess.run(command, capture_output=True, check=True), True)
        else:
            os.sync()  # as caterva's downloads: the writeback of earlier runs is not timed
            seconds = self.peer.call("download", path=path, dest=str(dest))["s"]
        if result.verified is not False:
            result.verified = data.same_dataset(self.layout.big / f"{stem}.b2nd", dest, "full")
        dest.unlink()
        return seconds

    def download_warm(self, stem: str, cli: bool) -> None:
        how = "CLI" if cli else "Python API"
        result = Result(f"download_{stem}_warm{'_cli' if cli else ''}", f"download {stem}, {how}")
        self._download(stem, result)  # everything cached, whatever ran before (API: no timeout)
        result.times = [self._download(stem, result, cli) for _ in range(self.repeat)]
        self.record(result)

    def _show(self) -> float:
        command = self.peer.show("big/smooth.b2nd", slice_text(self.layout.key))
        return timed(lambda: subprocess.run(command, capture_output=True, check=True))

    def _show_verified(self) -> bool:
        """`cat2cli show` prints what the original's selection renders to (Caterva2's numpy)."""
        command = self.peer.show("big/smooth.b2nd", slice_text(self.layout.key))
        shown = subprocess.run(command, capture_output=True, check=True).stdout.decode()
        original = str(self.layout.big / "smooth.b2nd")
        key = [[k.start, k.stop] for k in self.layout.key]
        return shown.strip() == self.peer.call("render", original=original, key=key)["text"]

    def select_warm(self, per_repeat: int = 10) -> None:
        cli = Result("select_cli_warm", "select 8 chunks, CLI, warm")
        cli.times = [self._show() for _ in range(self.repeat)]
        cli.verified = self._show_verified()
        self.record(cli)
        api = Result("select_client_warm", "select 8 chunks, Python API, warm")
        key = [[k.start, k.stop] for k in self.layout.key]
        saved = self.scratch / "selection.npy"
        self.peer.call("select", path="big/smooth.b2nd", key=key, save=str(saved))
        for _ in range(self.repeat * per_repeat):
            api.times.append(self.peer.call("select", path="big/smooth.b2nd", key=key)["s"])
        original = data.blosc2.open(str(self.layout.big / "smooth.b2nd"), mode="r")
        api.verified = bool(np.array_equal(np.load(saved), original[self.layout.key]))
        saved.unlink()
        self.record(api)

    def many(self) -> None:
        n = self.layout.datasets
        follow = Result("follow_many", f"follow a {n}-dataset root")
        cold = Result("download_many_cold", f"download {n} datasets, cold")
        warm = Result("download_many_warm", f"download {n} datasets, warm")
        for _ in range(self.repeat):  # following fills no cache: a cold download follows it
            self.peer.fresh_subscriber()
            answer = self.peer.call("subscribe", root="many")
            follow.times.append(answer["s"])
            follow.verified = answer["answer"] == "Ok" and follow.verified is not False
            cold.times.append(self._download_many(cold))
        for _ in range(self.repeat):
            warm.times.append(self._download_many(warm))
        for result in (follow, cold, warm):
            self.record(result)
        listed = Result("list_many_cli", "cat2cli list many")
        command = self.peer.cli("list", "many")
        for _ in range(self.repeat):
            listed.times.append(
                timed(lambda: subprocess.run(command, capture_output=True, check=True))
            )
        shown = subprocess.run(command, capture_output=True, check=True).stdout.decode()
        listed.verified = set(shown.split()) == set(map(self.layout.small_path, range(n)))
        self.record(listed)

    def _download_many(self, result: Result) -> float:
        dest = self.scratch / "many"
        shutil.rmtree(dest, ignore_errors=True)
        os.sync()
        answer = self.peer.call("download_root", root="many", dest=str(dest))
        paths = list(map(self.layout.small_path, range(self.layout.datasets)))
        result.verified = result.verified is not False and all(
            data.same_dataset(self.layout.many / p, dest / p, "full") for p in paths
        )
        shutil.rmtree(dest)
        return answer["s"]

    def cli_roots(self, per_repeat: int = 3) -> None:
        result = Result("cli_roots", "cat2cli roots")
        command = self.peer.cli("roots")
        for _ in range(self.repeat * per_repeat):
            result.times.append(
                timed(lambda: subprocess.run(command, capture_output=True, check=True))
            )
        shown = subprocess.run(command, capture_output=True, check=True).stdout.decode()
        result.verified = {"big", "many"} <= set(shown.split())
        self.record(result)


def run(workdir: Path, layout: data.Layout, rundir: Path, repeat: int, log) -> list[Result]:
    """Install (once), start, measure every scenario, stop: Caterva2's results."""
    venv = install(workdir, log)
    scratch = rundir / "peer-scratch"
    scratch.mkdir()
    log(f"Caterva2 {VERSION}, side by side")
    peer = Peer(venv, rundir / "caterva2", {"big": layout.big, "many": layout.many})
    peer.rundir.mkdir()
    try:
        return Scenarios(peer.start(), layout, scratch, repeat, log).run()
    finally:
        peer.close()
