"""When samples are taken: a scenario alone, or caterva's and Caterva2's side by side.

A Scenario says what one sample is (its untimed set-up, then the timed part) without running
it; scenarios.py describes caterva's, peer_caterva2.py Caterva2's, and only this module
decides the order. Side by side, sample i of one system is taken right after sample i of the
other, so both meet the machine's load of the same minutes and a ratio of two samples is not a
ratio of two moments.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import data, harness
from benchmarks.result import Result, describe

if TYPE_CHECKING:  # scenarios.py describes Scenarios: it imports this module
    from benchmarks.scenarios import Bench


def _nothing() -> None:
    pass


@dataclass
class Scenario:
    result: Result
    sample: Callable[[], float]  # one timed sample: wall seconds
    samples: int
    setup: Callable[[], object] = _nothing  # untimed, before each sample (a cold cache)
    prepare: Callable[[], object] = _nothing  # untimed, once before the first (a warm cache)
    verify: Callable[[], bool] = lambda: None  # untimed, once after the last


def alone(scenario: Scenario) -> Result:
    scenario.prepare()
    for _ in range(scenario.samples):
        scenario.setup()
        scenario.result.times.append(scenario.sample())
    scenario.result.verified = scenario.verify()
    return scenario.result


def pair(ours: Scenario, theirs: Scenario, processes: Callable[[], dict[str, int]]) -> None:
    """Samples alternate: ours, theirs, ours, theirs... Around each timed sample the CPU time of
    every service of both systems (``processes``: name -> pid, asked each time, since a cold
    Caterva2 subscriber is a new process) is added to that sample's result, so the idle
    system's share shows what it cost the timed one."""
    if ours.samples != theirs.samples:
        raise ValueError(f"{ours.result.name}: {ours.samples} samples against {theirs.samples}")
    sides = (ours, theirs)
    for side in sides:
        side.prepare()
    for _ in range(ours.samples):
        for side in sides:
            side.setup()
            before = cpu_times(processes())
            side.result.times.append(side.sample())
            for name, (pid, seconds) in cpu_times(processes()).items():
                if name in before and before[name][0] == pid:  # the same process
                    spent = seconds - before[name][1]
                    side.result.cpu[name] = side.result.cpu.get(name, 0.0) + spent
    for side in sides:
        side.result.verified = side.verify()


def cpu_times(processes: dict[str, int]) -> dict[str, tuple[int, float]]:
    """name -> (pid, user + system CPU seconds so far), from /proc; a process gone is left out."""
    out = {}
    for name, pid in processes.items():
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        # utime and stime are the stat file's fields 14 and 15; the split starts at field 3
        out[name] = (pid, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return out


def cpu_text(result: Result) -> str:
    """One line: each service's CPU seconds during the result's samples, by system."""
    systems: dict[str, list[str]] = {}
    for name, seconds in sorted(result.cpu.items()):
        system, _, service = name.partition(" ")
        systems.setdefault(system, []).append(f"{service} {seconds:.2f}")
    return "; ".join(f"{system} {', '.join(cpu)}" for system, cpu in systems.items())


class Play:
    """Runs caterva's scenarios in order; one that Caterva2 has too runs paired with it."""

    def __init__(self, bench: Bench, services: harness.Services, log) -> None:
        self.bench, self.services, self.log = bench, services, log
        self.peer = None
        self.twins: dict[str, Scenario] = {}  # Caterva2's scenarios not played yet
        self.theirs: list[Result] = []

    def beside_caterva2(self, workdir: Path, layout: data.Layout, rundir: Path, repeat: int):
        from benchmarks import peer_caterva2, peer_caterva2_scenarios

        roots = {"big": layout.big, "many": layout.many}
        self.peer = peer_caterva2.start(workdir, rundir / "caterva2", roots, self.log)
        scratch = rundir / "peer-scratch"
        scratch.mkdir()
        twins = peer_caterva2_scenarios.Scenarios(self.peer, layout, scratch, repeat)
        self.twins = {s.result.name: s for s in twins.all()}

    def __call__(self, scenarios: list[Scenario]) -> None:
        for ours in scenarios:
            twin = self.twins.pop(ours.result.name, None)
            if twin is None:
                self.bench.record(alone(ours))
                continue
            pair(ours, twin, self.processes)
            self.bench.record(ours.result)
            self.log(f"  Caterva2: {describe(twin.result)}")
            self.log(f"    CPU s during caterva's samples: {cpu_text(ours.result)}")
            self.log(f"    CPU s during Caterva2's samples: {cpu_text(twin.result)}")
            self.theirs.append(twin.result)

    def processes(self) -> dict[str, int]:
        ours = {f"caterva {p.name}": p.pid for p in self.services.started}
        return ours | {f"Caterva2 {name}": pid for name, pid in self.peer.processes().items()}

    def close(self) -> list[Result]:
        """Stop Caterva2 (if it runs); its results."""
        if self.peer is not None:
            self.peer.close()
        if self.twins:  # a Caterva2 scenario whose caterva twin was never played
            self.log(f"Caterva2 scenarios not run: {', '.join(sorted(self.twins))}")
            self.twins.clear()
        return self.theirs
