"""The table of results, and the same numbers as JSON.

Ratios lead: a download's speed as a fraction of the plain-HTTP baseline measured in the same
run, and every scenario's speed-up over the older system. Absolute times follow.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.result import Result

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
    if result.cpu:  # side by side: what every service spent during these samples
        out["cpu_s"] = result.cpu
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


# The side-by-side table: (label, result name on both sides, floor measured for the same bytes).
SIDE_ROWS = (
    ("CLI start-up + one request (roots)", "cli_roots", "tiny"),
    ("download compressible cube, cold", "download_smooth_cold", "smooth"),
    ("  same, warm, CLI", "download_smooth_warm_cli", "smooth"),
    ("  same, warm, Python API", "download_smooth_warm", "smooth"),
    ("select 8 chunks (1/64), CLI, cold", "select_cli_cold", "select"),
    ("  same, warm, CLI", "select_cli_warm", "select"),
    ("  same, warm, Python API", "select_client_warm", "select"),
    ("download incompressible cube, cold", "download_noise_cold", "noise"),
    ("  same, warm, CLI", "download_noise_warm_cli", "noise"),
    ("  same, warm, Python API", "download_noise_warm", "noise"),
    ("follow a root of {n} datasets", "follow_many", None),
    ("list that root, CLI", "list_many_cli", "tiny"),
    ("download those {n} datasets, cold", "download_many_cold", "many"),
    ("  same, warm", "download_many_warm", "many"),
)


def leads(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float]:
    """Caterva2's time over caterva's: ``lead``, the ratio of the medians, and ``pair_lead``,
    the median of the ratios of the samples taken together (sample i of each side)."""
    a, b = ours.get("times_s") or [], theirs.get("times_s") or []
    out = {}
    if a and b and all(a):
        out["lead"] = statistics.median(b) / statistics.median(a)
        if len(a) == len(b):
            out["pair_lead"] = statistics.median(y / x for x, y in zip(a, b))
    return out


def side_by_side(rows: list[dict[str, Any]], peer: list[dict[str, Any]], datasets: int) -> str:
    """caterva against Caterva2, row by row, with the plain-HTTP floors of the same run and,
    for whole cubes, the cost of copying the file (``cp``)."""
    ours, theirs = {r["name"]: r for r in rows}, {r["name"]: r for r in peer}
    servers = [s for s in ("nginx", "uvicorn") if f"{s}_tiny" in ours]
    lines = [
        (
            "scenario",
            "caterva",
            "Caterva2",
            "lead",
            "pair lead",
            *(f"{s} floor" for s in servers),
            "cp floor",
        )
    ]
    for label, name, floor in SIDE_ROWS:
        a, b = ours.get(name, {}).get("median_s"), theirs.get(name, {}).get("median_s")
        floors = [ours.get(f"{s}_{floor}", {}).get("median_s") for s in (*servers, "cp")]
        lead = leads(ours.get(name, {}), theirs.get(name, {}))
        unverified = [
            who
            for who, r in (("caterva", ours), ("Caterva2", theirs))
            if r.get(name, {}).get("verified") is False
        ]
        lines.append(
            (
                label.format(n=f"{datasets:,}")
                + (f" (NOT verified: {', '.join(unverified)})" if unverified else ""),
                _t(a),
                _t(b),
                *(f"{lead[k]:.1f}x" if k in lead else "-" for k in ("lead", "pair_lead")),
                *map(_t, floors),
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


def write_json(
    path: Path, meta: dict[str, Any], rows: list[dict], memory: list[dict], peer: list[dict]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = {"meta": meta, "results": rows, "memory": memory, **({"peer": peer} if peer else {})}
    path.write_text(json.dumps(out, indent=2))
