"""A scenario's samples and target, and how one sample is timed."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """What a scenario should reach: at most ``seconds``, or ``fraction`` of a baseline's speed."""

    seconds: float | None = None
    fraction: float | None = None
    baseline: str | None = None

    def text(self) -> str:
        if self.fraction is not None:
            return f">= {self.fraction:.0%} of baseline"
        return f"< {_ms(self.seconds)}" if self.seconds is not None else ""


@dataclass
class Result:
    name: str
    label: str
    times: list[float] = field(default_factory=list)
    nbytes: int | None = None  # bytes delivered: downloads report a throughput
    target: Target = Target()
    older: float | None = None  # the older system's figure, seconds
    verified: bool | None = None
    note: str = ""
    # side by side: CPU seconds each service (of both systems) spent during these samples
    cpu: dict[str, float] = field(default_factory=dict)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def describe(result: Result) -> str:
    """One progress line: median, range, verification."""
    times = sorted(result.times)
    return (
        f"{result.label}: median {_ms(times[len(times) // 2])} "
        f"(min {_ms(times[0])}, max {_ms(times[-1])}), verified {result.verified}"
    )


def timed(fn: Callable[[], object], settle: bool = False) -> float:
    """Wall seconds of ``fn()``. ``settle``: first write dirty pages out (untimed), so a run is
    not slowed by the writeback of what the runs before it wrote."""
    if settle:
        os.sync()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
