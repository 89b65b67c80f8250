"""Client commands start fast: their --help and the catalog commands import neither numpy
nor blosc2 (nor, for --help, httpx); every command documents --json and --sub."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CATALOG = ["roots", "follow", "unfollow", "list", "info", "watch"]
ALL = [*CATALOG, "show", "download"]


def imported(*args: str) -> tuple[str, set[str]]:
    env = {**os.environ, "CATERVA_CONFIG": "/nonexistent"}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "caterva", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "typer" in modules  # the check sees real imports
    return proc.stdout, modules


@pytest.mark.parametrize("name", ALL)
def test_help_is_light_and_documents_json_and_sub(name):
    out, modules = imported(name, "--help")
    assert "--json" in out and "--sub" in out and "CATERVA_SUB" in out
    assert not modules & {"numpy", "blosc2", "httpx"}
