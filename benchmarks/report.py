"""The table of results, and the same numbers as JSON.

Ratios lead: a download's speed as a fraction of the plain-HTTP baseline measured in the same
run, and every scenario's speed-up over the older system. Absolute times follow.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.scenarios import Result

MIB = 2**20


def summary(result: Result, results: list[Result]) -> dict[str, Any]:
    times = result.times
    median = statistics.median(times) if times else None
    out: dict[str, Any] = {
        "name": result.name,
        "label": result.label,
        "samples": len(times),
        "median_s": median,
        "min_s": min(times, default=None),
        "max_s": max(times, default=None),
        "times_s": times,
        "verified": result.verified,
        "note": result.note,
        "target": result.target.text(),
        "older_s": result.older,
    }
    if result.nbytes and median:
        out["bytes"] = result.nbytes
        out["mib_per_s"] = result.nbytes / MIB / median
    by_name = {r.name: r for r in results}
    base = by_name.get(result.target.baseline or "")
    if base is not None and median and base.times:
        out["of_baseline"] = statistics.median(base.times) / median
        out["met"] = out["of_baseline"] >= result.target.fraction
        # the same ratio against nginx (sendfile), when it ran: the strongest plain server
        nginx = by_name.get("nginx_" + base.name.partition("_")[2])
        if nginx is not None and nginx.times:
            out["of_nginx"] = statistics.median(nginx.times) / median
    elif result.target.seconds is not None and median is not None:
        out["met"] = median < result.target.seconds
    if result.older and median:
        out["vs_older"] = result.older / median
    return out


def _t(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "scenario",
        "of baseline",
        "of nginx",
        "vs older",
        "median",
        "min-max",
        "MiB/s",
        "target",
        "met",
        "verified",
    )
    lines = [head]
    for r in rows:
        met = {True: "yes", False: "NO"}.get(r.get("met"), "")
        lines.append(
            (
                r["label"],
                f"{r['of_baseline']:.0%}" if "of_baseline" in r else "",
                f"{r['of_nginx']:.0%}" if "of_nginx" in r else "",
                f"{r['vs_older']:.1f}x" if "vs_older" in r else "",
                _t(r["median_s"]),
                f"{_t(r['min_s'])} - {_t(r['max_s'])}",
                f"{r['mib_per_s']:.0f}" if "mib_per_s" in r else "",
                r["target"],
                met,
                {True: "yes", False: "NO", None: ""}[r["verified"]],
            )
        )
    return _columns(lines)


def memory_table(rows: list[dict[str, Any]]) -> str:
    lines = [("process", "data served", "peak RSS (VmHWM)", "target", "met")]
    for r in rows:
        lines.append(
            (
                r["process"],
                r["data"],
                f"{r['peak'] / MIB:.0f} MiB",
                "< 150 MiB",
                "yes" if r["peak"] < 150 * MIB else "NO",
            )
        )
    return _columns(lines)


def _columns(lines: list[tuple[str, ...]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for n, line in enumerate(lines):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def write_json(path: Path, meta: dict[str, Any], rows: list[dict], memory: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "results": rows, "memory": memory}, indent=2))
