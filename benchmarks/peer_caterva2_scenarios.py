"""Caterva2's side of every side-by-side row (``--peer caterva2``): the same scenarios as
caterva's (scenarios.py), named alike, through Caterva2's CLI and its Python API (the driver).

Caterva2 has no unfollow: a cold cache is a fresh subscriber (stopped, its state directory
wiped, started again on the same port), untimed. Every result is verified against the original
files once, after its samples, outside the timings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from benchmarks import data
from benchmarks.peer_caterva2 import Peer, slice_text
from benchmarks.result import Result, timed
from benchmarks.schedule import Scenario


class Scenarios:
    """Caterva2's side of every row, as Scenarios named after caterva's for the table."""

    def __init__(self, peer: Peer, layout: data.Layout, scratch: Path, repeat: int) -> None:
        self.peer, self.layout, self.scratch, self.repeat = peer, layout, scratch, repeat

    def all(self) -> list[Scenario]:
        n = self.layout.datasets
        return [
            *(
                self.download(stem, cold, cli)
                for stem in ("smooth", "noise")
                for cold, cli in ((True, False), (False, True), (False, False))
            ),
            self.select_cli(cold=True),
            self.select_cli(cold=False),
            self.select_api(),
            self.follow_many(),
            self.download_many(Result("download_many_cold", f"download {n} datasets, cold")),
            self.download_many(Result("download_many_warm", f"download {n} datasets, warm")),
            self.list_many(),
            self.cli_roots(),
        ]

    def _cold(self, root: str) -> None:
        """Caterva2's only way to an empty cache: a fresh subscriber, following ``root``."""
        self.peer.fresh_subscriber()
        self.peer.follow(root)

    def download(self, stem: str, cold: bool, cli: bool) -> Scenario:
        """big/STEM.b2nd, through the Python API (no timeout: see the driver) or cat2cli."""
        how = "cold" if cold else "CLI" if cli else "Python API"
        result = Result(
            f"download_{stem}_{'cold' if cold else 'warm'}{'_cli' if cli else ''}",
            f"download {stem}, {how}",
        )
        dest = self.scratch / f"{stem}.b2nd"
        path = f"big/{stem}.b2nd"
        command = self.peer.cli("download", path, str(dest))

        def setup() -> None:
            dest.unlink(missing_ok=True)
            self._cold("big") if cold else self.peer.follow("big")

        def sample() -> float:
            if cli:
                return timed(lambda: subprocess.run(command, capture_output=True, check=True), True)
            os.sync()  # as caterva's downloads: the writeback of earlier runs is not timed
            return self.peer.call("download", path=path, dest=str(dest))["s"]

        def warm() -> None:  # everything cached, whatever ran before
            setup()
            self.peer.call("download", path=path, dest=str(dest))

        def verify() -> bool:
            same = data.same_dataset(self.layout.big / f"{stem}.b2nd", dest, "full")
            dest.unlink()
            return same

        prepare = (lambda: None) if cold else warm
        return Scenario(result, sample, self.repeat, setup, prepare, verify)

    def _show(self) -> list[str]:
        return self.peer.show("big/smooth.b2nd", slice_text(self.layout.key))

    def select_cli(self, cold: bool) -> Scenario:
        kind = "cold" if cold else "warm"
        result = Result(f"select_cli_{kind}", f"select 8 chunks, CLI, {kind}")
        run = lambda: subprocess.run(self._show(), capture_output=True, check=True)  # noqa: E731

        def verify() -> bool:
            """It prints what the original's selection renders to (with Caterva2's numpy)."""
            original = str(self.layout.big / "smooth.b2nd")
            key = [[k.start, k.stop] for k in self.layout.key]
            rendered = self.peer.call("render", original=original, key=key)["text"]
            return run().stdout.decode().strip() == rendered

        setup = (lambda: self._cold("big")) if cold else lambda: self.peer.follow("big")
        prepare = (lambda: None) if cold else lambda: (setup(), run())
        return Scenario(result, lambda: timed(run), self.repeat, setup, prepare, verify)

    def select_api(self, per_repeat: int = 10) -> Scenario:
        result = Result("select_client_warm", "select 8 chunks, Python API, warm")
        key = [[k.start, k.stop] for k in self.layout.key]
        saved = self.scratch / "selection.npy"
        select = lambda **save: self.peer.call("select", path="big/smooth.b2nd", key=key, **save)  # noqa: E731

        def prepare() -> None:  # warms the cache, keeps the values for verify
            self.peer.follow("big")
            select(save=str(saved))

        def verify() -> bool:
            original = data.blosc2.open(str(self.layout.big / "smooth.b2nd"), mode="r")
            same = bool(np.array_equal(np.load(saved), original[self.layout.key]))
            saved.unlink()
            return same

        sample = lambda: select()["s"]  # noqa: E731
        return Scenario(result, sample, self.repeat * per_repeat, prepare=prepare, verify=verify)

    def follow_many(self) -> Scenario:
        result = Result("follow_many", f"follow a {self.layout.datasets}-dataset root")
        answers = []

        def sample() -> float:
            answer = self.peer.follow("many")  # a fresh subscriber: follows
            answers.append(answer["answer"])
            return answer["s"]

        verify = lambda: all(a == "Ok" for a in answers)  # noqa: E731
        return Scenario(result, sample, self.repeat, self.peer.fresh_subscriber, verify=verify)

    def download_many(self, result: Result) -> Scenario:
        """The whole root, as its API offers it (following fills no cache: a cold download
        follows a fresh subscriber's follow)."""
        cold = result.name.endswith("cold")
        dest = self.scratch / "many"

        def setup() -> None:
            shutil.rmtree(dest, ignore_errors=True)
            self._cold("many") if cold else self.peer.follow("many")

        def sample() -> float:
            os.sync()
            return self.peer.call("download_root", root="many", dest=str(dest))["s"]

        def verify() -> bool:
            paths = map(self.layout.small_path, range(self.layout.datasets))
            same = all(data.same_dataset(self.layout.many / p, dest / p, "full") for p in paths)
            shutil.rmtree(dest)
            return same

        prepare = (lambda: None) if cold else lambda: (setup(), sample())
        return Scenario(result, sample, self.repeat, setup, prepare, verify)

    def list_many(self) -> Scenario:
        result = Result("list_many_cli", "cat2cli list many")
        command = self.peer.cli("list", "many")
        run = lambda: subprocess.run(command, capture_output=True, check=True)  # noqa: E731

        def verify() -> bool:
            names = set(map(self.layout.small_path, range(self.layout.datasets)))
            return set(run().stdout.decode().split()) == names

        prepare = lambda: self.peer.follow("many")  # noqa: E731
        return Scenario(result, lambda: timed(run), self.repeat, prepare=prepare, verify=verify)

    def cli_roots(self, per_repeat: int = 3) -> Scenario:
        result = Result("cli_roots", "cat2cli roots")
        command = self.peer.cli("roots")
        run = lambda: subprocess.run(command, capture_output=True, check=True)  # noqa: E731
        verify = lambda: {"big", "many"} <= set(run().stdout.decode().split())  # noqa: E731
        return Scenario(result, lambda: timed(run), self.repeat * per_repeat, verify=verify)
