"""The benchmark suite, run at a tiny scale so it does not rot: every scenario must produce
numbers and every download must be verified. Timings are not asserted (they are measured by
``python -m benchmarks.run``, not judged by tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCENARIOS = {
    "uvicorn_smooth",
    "uvicorn_noise",
    "download_smooth_cold",
    "download_smooth_warm",
    "download_noise_cold",
    "download_noise_warm",
    "select_cli_cold",
    "select_client_warm",
    "follow_many",
    "download_many_cold",
    "download_many_warm",
    "cli_roots",
    "change_notify",
}


def test_every_scenario_runs_and_is_verified(tmp_path):
    out = tmp_path / "results.json"
    # as a user runs it: the command, from the repository
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--scale",
            "0.0002",
            "--datasets",
            "4",
            "--repeat",
            "1",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=110,
    )
    report = json.loads(out.read_text())

    results = {r["name"]: r for r in report["results"]}
    assert SCENARIOS <= set(results)
    for name, r in results.items():
        assert r["samples"] >= 1 and all(t > 0 for t in r["times_s"]), name
        assert r["verified"] is True, name
    for name in ("download_smooth_cold", "download_noise_warm"):
        assert results[name]["of_baseline"] > 0 and results[name]["mib_per_s"] > 0
    # the rows only the side-by-side table needs run with --peer alone: the plain run stays lean
    assert "peer" not in report and "download_smooth_warm_cli" not in results
    assert len(report["memory"]) == 4  # publisher and subscriber, at two sizes
    assert all(m["peak"] > 0 for m in report["memory"])


def test_the_show_ab_runs_and_both_sides_print_the_same(tmp_path):
    """``benchmarks.showab`` with this tree as the other side too: every command (show, a
    download, roots) runs, and the selection (summarised: printed from its corners) prints
    the same every time."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.showab", "--old", str(ROOT), "--repeat", "1"]
        + ["--scale", "0.001", "--workdir", str(tmp_path / "work")],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=110,
    )
    lines = done.stdout.splitlines()
    assert sum(" median " in line for line in lines) == 8, done.stdout  # 4 cases, 2 sides
    assert "show, warm: every sample printed the same: True" in lines
    assert "show, cold: every sample printed the same: True" in lines


def test_the_copy_floor_runs_every_way(tmp_path):
    """``benchmarks.copyfloor``: the chunks copied three ways, each timed; scratch removed."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.copyfloor", "--repeat", "1", "--scale", "0.001"]
        + ["--workdir", str(tmp_path / "work")],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in done.stdout.splitlines() if " median " in line]
    assert [line.split(" median ")[0].strip() for line in lines] == [
        "handoff (buffered, 2 at once)",
        "copy_file_range a file",
        "one file, one call",
    ], done.stdout
    assert not (tmp_path / "work" / "copyfloor").exists()
