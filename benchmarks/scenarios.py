"""What is timed, and how each result is checked.

Each scenario has an untimed setup (e.g. unfollow + follow for a cold cache), a timed part that
does what a user does, and a verification run once, outside the timed part. Samples are wall
times in seconds; quick scenarios take several samples per repeat. The methods describe a
Scenario; schedule.py runs it (alone, or beside Caterva2's).
"""

from __future__ import annotations

import compileall
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

import caterva
from benchmarks import data
from benchmarks.floors import Floors
from benchmarks.result import Result, Target, describe, timed
from benchmarks.schedule import Scenario
from caterva import Client


class Bench(Floors):
    """The scenarios, against one subscriber and the data of one Layout."""

    def __init__(
        self, layout: data.Layout, sub_url: str, scratch: Path, repeat: int, log=print
    ) -> None:
        self.layout = layout
        self.sub_url = sub_url
        self.scratch = scratch
        self.repeat = repeat
        self.log = log
        self.client = Client(sub_url)
        self.results: list[Result] = []
        exe = Path(sys.executable).with_name("caterva")
        self.cli = [str(exe)] if exe.exists() else [sys.executable, "-m", "caterva"]
        # Bytecode, as an installed package has it (pip compiles at install; Caterva2's has).
        # An editable checkout under PYTHONDONTWRITEBYTECODE, or with edits newer than its
        # .pyc files, would compile ~40 modules at every CLI start (40-75 ms).
        compileall.compile_dir(Path(caterva.__file__).parent, quiet=1)

    def record(self, result: Result) -> Result:
        self.log(f"  {describe(result)}")
        self.results.append(result)
        return result

    def refollow(self, root: str) -> None:
        """A cold cache: unfollowing drops every cached chunk of the root."""
        if any(r.name == root and r.followed for r in self.client.roots()):
            self.client.unfollow(root)
        self.client.follow(root)

    # --- whole-file downloads ----------------------------------------------------------------

    def download(
        self,
        name: str,
        cold: bool,
        label: str,
        target: Target,
        older: float | None,
        cli: bool = False,
    ) -> Scenario:
        source = self.layout.big / name
        dest = self.scratch / name
        kind = "cold" if cold else "warm"
        command = [*self.cli, "download", f"big/{name}", "-o", str(dest), "--sub", self.sub_url]
        if cli:  # as a user types it: start-up included
            get = lambda: subprocess.run(command, capture_output=True, check=True)  # noqa: E731
        else:
            get = lambda: self.client.download(f"big/{name}", dest)  # noqa: E731
        result = Result(
            f"download_{name.split('.')[0]}_{kind}{'_cli' if cli else ''}",
            label,
            nbytes=source.stat().st_size,
            target=target,
            older=older,
        )

        def setup() -> None:
            dest.unlink(missing_ok=True)
            if cold:
                self.refollow("big")

        def verify() -> bool:
            same = data.same_dataset(source, dest)
            dest.unlink()
            return same

        return Scenario(
            result,
            lambda: timed(get, True),
            self.repeat,
            setup,
            # warm: everything cached, whatever ran before
            prepare=(lambda: None) if cold else lambda: self.client.download(f"big/{name}", dest),
            verify=verify,
        )

    # --- selections --------------------------------------------------------------------------

    def select_cli(self, cold: bool, target: Target, older: float | None) -> Scenario:
        address = f"big/smooth.b2nd[{self.layout.selection}]"
        kind = "cold" if cold else "warm"
        result = Result(
            f"select_cli_{kind}",
            f"select 8 chunks, CLI, {kind}",
            target=target,
            older=older,
            note=f"caterva show '{address}'",
        )
        command = [*self.cli, "show", address, "--sub", self.sub_url]
        run = lambda: subprocess.run(command, capture_output=True, check=True)  # noqa: E731

        def verify() -> bool:
            q = self.layout.side // 4
            return f"shape ({q}, {q}, {q})" in run().stdout.decode()

        setup = (lambda: self.refollow("big")) if cold else (lambda: None)
        return Scenario(result, lambda: timed(run), self.repeat, setup, verify=verify)

    def select_client_warm(self, target: Target, older: float, per_repeat: int = 10) -> Scenario:
        result = Result(
            "select_client_warm",
            "select 8 chunks, Python client, warm",
            target=target,
            older=older,
            note="ds[sel] on an open Client",
        )
        ds = self.client.dataset("big/smooth.b2nd")
        got = []

        def verify() -> bool:
            original = data.blosc2.open(str(self.layout.big / "smooth.b2nd"), mode="r")
            return bool(np.array_equal(got[0], original[self.layout.key]))

        return Scenario(
            result,
            lambda: timed(lambda: ds[self.layout.key]),
            self.repeat * per_repeat,
            prepare=lambda: got.append(ds[self.layout.key]),  # warms the cache
            verify=verify,
        )

    # --- the root of many small datasets -----------------------------------------------------

    def follow_many(self, target: Target, older: float) -> Scenario:
        result = Result(
            "follow_many",
            f"follow a {self.layout.datasets}-dataset root",
            target=target,
            older=older,
        )
        counts = []

        def setup() -> None:
            if any(r.name == "many" and r.followed for r in self.client.roots()):
                self.client.unfollow("many")

        def sample() -> float:
            start = time.perf_counter()
            counts.append(self.client.follow("many"))
            return time.perf_counter() - start

        verify = lambda: counts[-1] == self.layout.datasets  # noqa: E731
        return Scenario(result, sample, self.repeat, setup, verify=verify)

    def download_many(self, cold: bool, target: Target, older: float) -> Scenario:
        kind = "cold" if cold else "warm"
        dest = self.scratch / "many"
        result = Result(
            f"download_many_{kind}",
            f"download {self.layout.datasets} small datasets, {kind}",
            target=target,
            older=older,
        )

        def setup() -> None:
            shutil.rmtree(dest, ignore_errors=True)
            if cold:
                self.refollow("many")

        def verify() -> bool:
            same = all(
                data.same_dataset(self.layout.many / p, dest / p)
                for p in map(self.layout.small_path, range(self.layout.datasets))
            )
            shutil.rmtree(dest)
            return same

        return Scenario(
            result,
            lambda: timed(lambda: self.client.download("many", dest), True),
            self.repeat,
            setup,
            prepare=(lambda: None) if cold else lambda: self.client.download("many", dest),
            verify=verify,
        )

    # --- the CLI and change events -----------------------------------------------------------

    def cli_roots(self, target: Target, older: float, per_repeat: int = 3) -> Scenario:
        result = Result("cli_roots", "CLI start-up: caterva roots", target=target, older=older)
        command = [*self.cli, "roots", "--sub", self.sub_url]
        run = lambda: subprocess.run(command, capture_output=True, check=True)  # noqa: E731

        def verify() -> bool:
            shown = run().stdout.decode()
            return "many" in shown and "big" in shown

        return Scenario(result, lambda: timed(run), self.repeat * per_repeat, verify=verify)

    def cli_list(self, root: str = "many") -> Scenario:
        """`caterva list` of the many-dataset root, human output."""
        result = Result("list_many_cli", f"CLI: caterva list {root}", note="rich table")
        command = [*self.cli, "list", root, "--sub", self.sub_url]
        run = lambda: subprocess.run(command, capture_output=True, check=True)  # noqa: E731

        def verify() -> bool:
            shown = run().stdout.decode()
            names = map(self.layout.small_path, range(self.layout.datasets))
            return all(Path(name).name in shown for name in names)

        return Scenario(result, lambda: timed(run), self.repeat, verify=verify)

    def change_notify(self, target: Target, per_repeat: int = 5) -> Result:
        """A file rewritten at the publisher -> its update event at a watching client."""
        path = self.layout.small_path(0)
        target_file = self.layout.many / path
        result = Result(
            "change_notify",
            "change visible at the subscriber",
            target=target,
            note="rewrite at the publisher -> client.watch() event",
        )
        events: queue.Queue = queue.Queue()
        rng = np.random.default_rng(4)
        values = None
        with Client(self.sub_url) as watcher, watcher.watch("many") as stream:
            threading.Thread(target=_pump, args=(stream, events), daemon=True).start()
            for _ in range(self.repeat * per_repeat):
                values = rng.normal(size=data.SMALL_SHAPE)
                tmp = target_file.with_name(target_file.name + ".tmp")  # skipped by publishers
                data.write_small(tmp, values)
                start = time.perf_counter()
                os.replace(tmp, target_file)
                while True:
                    event = events.get(timeout=30)
                    if event.get("path") == path and event["event"] in ("update", "create"):
                        break
                result.times.append(time.perf_counter() - start)
        result.verified = bool(np.array_equal(self.client.dataset(f"many/{path}")[...], values))
        return self.record(result)

    def close(self) -> None:
        self.client.close()


def _pump(stream, events: queue.Queue) -> None:
    try:
        for event in stream:
            events.put(event)
    except Exception:  # the stream closes when the benchmark ends
        pass
