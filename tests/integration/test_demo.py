"""The quick start's main job, `caterva demo`, runs the whole flow and cleans up after itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLE, ROOT


def test_demo_runs_the_whole_flow_and_stops_everything(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "caterva", "demo", str(EXAMPLE), "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for step in ("caterva roots", "caterva follow example", "caterva show", "caterva download"):
        assert step in done.stdout
    assert "verified:" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    # every service it started is gone: their logs are closed and no process holds the workdir
    assert (tmp_path / "downloads" / "copy.b2nd").exists()
    assert not [cmd for cmd in command_lines() if str(tmp_path) in cmd]


def command_lines() -> list[str]:
    out = []
    for proc in Path("/proc").iterdir():
        try:
            out.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError):
            continue  # not a process, or it ended meanwhile
    return out


def test_demo_refuses_a_missing_directory(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "caterva", "demo", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "is not a directory" in done.stderr and "Traceback" not in done.stderr
