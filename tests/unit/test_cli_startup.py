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


def loaded(command: list[str]) -> set[str]:
    """The modules a `caterva` process running ``command`` against a subscriber nobody runs
    has loaded by its exit (which must say the subscriber was unavailable: it did try)."""
    code = (
        "import sys\n"
        "from caterva.cli.app import run_command\n"
        f"sys.argv = ['caterva', *{command!r}, '--sub', 'http://127.0.0.1:9']\n"  # nothing listens
        "try:\n"
        "    run_command()\n"
        "except SystemExit as exc:\n"
        "    print(exc.code, *[m for m in sys.modules if sys.modules[m] is not None])\n"
    )
    env = {**os.environ, "CATERVA_CONFIG": "/nonexistent"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    code_, *modules = proc.stdout.split()
    assert code_ == "4", proc.stderr[-2000:]  # Unavailable: it did try to connect
    return set(modules)


HEAVY = {"pydantic", "httpx", "httpcore", "click", "pygments", "tomllib", "numpy", "blosc2"}


@pytest.mark.parametrize("command", [["roots"], ["list", "r"]])  # list: an int option, unset
def test_client_commands_skip_what_they_do_not_use(command):
    """A command that talks to the subscriber loads neither pydantic (typer would, for its
    option values) nor the async client nor httpx (~25 ms: the Client's requests go over
    client/lean.py) nor what httpx would bring (its own CLI, HTTP/2, trio): together they were
    over half of `caterva roots`."""
    modules = loaded(command)
    assert {"httptools", "caterva.client.sync"} <= modules
    assert not {m.split(".")[0] for m in modules} & HEAVY
    assert "caterva.client.aio" not in modules
    assert "caterva.client.dataset" not in modules  # reads: show and info only
    assert "caterva.client.download" not in modules  # downloads' planning and file work


def test_a_download_skips_pydantic_and_rich_renderables(tmp_path):
    """typer makes a Path option's value through pydantic (~40 ms of a warm `download`), and a
    command that prints one line, or its error off a terminal, needs no rich console, table or
    text (~10 ms)."""
    modules = loaded(["download", "r/d.b2nd", "-o", str(tmp_path / "d.b2nd")])
    assert not {m.split(".")[0] for m in modules} & HEAVY
    assert not {"rich.console", "rich.text", "rich.table", "rich.tree"} & modules


def test_plain_option_values_skip_pydantic_but_keep_typer_checks():
    """str and bool values pass through as they are; anything else is still typer's to check."""
    from typer.testing import CliRunner

    from caterva.cli.app import app

    result = CliRunner().invoke(app, ["bro", "--port", "lots"])
    assert result.exit_code == 2 and "--port" in result.output


@pytest.mark.parametrize(
    "args, code, teardown",
    [
        (["roots", "--sub", "http://127.0.0.1:9"], 4, False),  # a client command (it failed)
        (["--version"], 0, True),  # not one: the normal exit, atexit handlers and all
    ],
)
def test_a_client_command_leaves_without_the_teardown(args, code, teardown):
    """The program (main()) skips the interpreter's teardown after a client command, its output
    flushed first; any other command exits normally."""
    program = (
        "import atexit, sys\n"
        "from caterva.cli.app import main\n"
        "atexit.register(lambda: print('teardown'))\n"
        f"sys.argv = ['caterva', *{args!r}]\n"
        "main()\n"
    )
    env = {**os.environ, "CATERVA_CONFIG": "/nonexistent"}
    proc = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == code, proc.stderr[-2000:]
    assert ("teardown" in proc.stdout) == teardown
    assert ("cannot reach the subscriber" in proc.stderr) == (code == 4)  # flushed first
