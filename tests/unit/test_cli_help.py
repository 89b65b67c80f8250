"""`caterva --help` and each command's help, through the real command: whole summaries, plain
usage lines, defaults and environment variables named, examples, exit codes, --version and
shell completion."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

COMMANDS = [
    "bro",
    "pub",
    "sub",
    "roots",
    "follow",
    "unfollow",
    "list",
    "info",
    "watch",
    "show",
    "download",
    "login",
    "logout",
    "demo",
    "user",
    "trust",
    "status",
]


def caterva(*args: str, columns: int = 80) -> str:
    env = {**os.environ, "CATERVA_CONFIG": "/nonexistent", "COLUMNS": str(columns)}
    proc = subprocess.run(
        [sys.executable, "-m", "caterva", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("columns", [80, 110])
def test_top_level_help(columns):
    text = caterva("--help", columns=columns)
    listed = text.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    assert {line.split()[0] for line in listed.splitlines() if line[2:3] != " "} == set(COMMANDS)
    assert "..." not in listed  # no summary cut mid-sentence
    for needed in (
        "--json",
        "CATERVA_SUB",
        "Exit codes",
        "6 root not followed",
        "Examples",
        "--version",
        "--install-completion",
    ):
        assert needed in text, needed


@pytest.mark.parametrize("name", COMMANDS)
def test_usage_lines_are_plain(name):
    text = caterva(name, "--help")
    usage = text.splitlines()[0]
    assert not re.search(r"[{}<>]|\[\[", usage), usage
    assert not re.search(r"<(str|path|int|bool)>", text), text


def test_settings_name_their_default_and_variable():
    pub, sub, bro = caterva("pub", "--help"), caterva("sub", "--help"), caterva("bro", "--help")
    flat = " ".join(" ".join((pub, sub, bro, caterva("roots", "--help"))).split())
    for needed in (
        "default mqtt://127.0.0.1:1883; env CATERVA_BROKER",
        "default ~/.local/state/caterva/SERVICE; env CATERVA_STATEDIR",
        "default http://127.0.0.1:8471; env CATERVA_SUB",
        "env CATERVA_CACHE_SIZE",
        "env CATERVA_PUBLISHER_HTTP",
        "env CATERVA_SUBSCRIBER_HTTP",
        "env CATERVA_BROKER_HOST",
        "env CATERVA_BROKER_PORT",
    ):
        assert needed in flat, needed
    assert "Examples:" in pub and "Examples:" in caterva("download", "--help")


def test_demo_states_its_default_once():
    assert caterva("demo", "--help").count("root-example") == 1


def test_version():
    from importlib.metadata import version

    assert caterva("--version") == f"caterva {version('caterva')}\n"
