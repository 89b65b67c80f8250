"""The Caterva2 side-by-side benchmark without Caterva2: how its commands are built, how its
state is read, when it installs, and the table. Nothing here downloads or starts a service
(the real thing is ``python -m benchmarks.run --peer caterva2``)."""

from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks import peer_caterva2, report, run
from benchmarks.data import Layout


def test_service_commands_bind_loopback_with_their_own_state(tmp_path):
    venv = tmp_path / "venv"
    command = peer_caterva2.service_command(
        venv, "pub", 8123, tmp_path / "pub", "--broker", "127.0.0.1:8000", "big", "/data"
    )
    assert command == [
        str(venv / "bin" / "cat2pub"),
        "--http",
        "127.0.0.1:8123",
        "--statedir",
        str(tmp_path / "pub"),
        "--broker",
        "127.0.0.1:8000",
        "big",
        "/data",
    ]
    assert peer_caterva2.cli_command(venv, "http://127.0.0.1:9", "list", "many") == [
        str(venv / "bin" / "cat2cli"),
        "--subscriber",
        "http://127.0.0.1:9",
        "list",
        "many",
    ]


def test_the_selection_is_written_as_caterva2_parses_it():
    layout = Layout(base=None, side=512, datasets=1)
    assert peer_caterva2.slice_text(layout.key) == "128:256, 128:256, 128:256"


def test_published_counts_the_announced_datasets_and_tolerates_no_state(tmp_path):
    assert peer_caterva2.published(tmp_path) == 0  # not written yet
    (tmp_path / "db.json").write_text("{")  # never half-written (atomic), but no crash
    assert peer_caterva2.published(tmp_path) == 0
    (tmp_path / "db.json").write_text(json.dumps({"etags": {"a.b2nd": "1", "b.b2nd": "2"}}))
    assert peer_caterva2.published(tmp_path) == 2


def test_a_completed_install_is_reused_without_running_pip(tmp_path, monkeypatch):
    venv = tmp_path / f"caterva2-{peer_caterva2.VERSION}"
    venv.mkdir()
    (venv / ".installed").write_text(" ".join(peer_caterva2.REQUIREMENTS))

    def refuse(*args, **kwargs):
        raise AssertionError("must not install again")

    monkeypatch.setattr(subprocess, "run", refuse)
    assert peer_caterva2.install(tmp_path, log=lambda _: None) == venv


def test_an_incomplete_install_starts_over(tmp_path, monkeypatch):
    venv = tmp_path / f"caterva2-{peer_caterva2.VERSION}"
    venv.mkdir()
    (venv / "leftover").touch()  # no marker: pip was interrupted
    commands = []

    def record(command, **kwargs):  # `python -m venv` makes the directory
        commands.append(command)
        venv.mkdir(exist_ok=True)

    monkeypatch.setattr(subprocess, "run", record)
    assert peer_caterva2.install(tmp_path, log=lambda _: None) == venv
    assert not (venv / "leftover").exists()
    assert commands[1][-len(peer_caterva2.REQUIREMENTS) :] == peer_caterva2.REQUIREMENTS
    assert (venv / ".installed").read_text().split() == peer_caterva2.REQUIREMENTS


def test_only_caterva2_is_a_peer():
    assert run.parse(["--peer", "caterva2"]).peer == "caterva2"
    assert run.parse([]).peer is None
    with pytest.raises(SystemExit):
        run.parse(["--peer", "zarr"])


def _row(name, median, verified=True, times=None):
    return {"name": name, "median_s": median, "verified": verified, "times_s": times or [median]}


def test_the_side_by_side_table_shows_the_leads_and_the_floors():
    ours = [
        _row("download_smooth_cold", 0.5, times=[0.5, 0.4, 1.0]),
        _row("uvicorn_smooth", 0.25),
        _row("cp_smooth", 0.125),
        _row("uvicorn_tiny", 0.01),
        _row("cli_roots", 0.2),
    ]
    theirs = [
        _row("download_smooth_cold", 10.0, times=[10.0, 4.0, 12.0]),  # pairs: 20x, 10x, 12x
        _row("cli_roots", 1.0, verified=False),
    ]
    lines = report.side_by_side(ours, theirs, 1000).splitlines()
    cold = next(line for line in lines if line.startswith("download compressible cube, cold"))
    assert cold.split()[4:] == [
        "500",
        "ms",
        "10.00",
        "s",
        "20.0x",
        "12.0x",
        "250",
        "ms",
        "125",
        "ms",
    ]
    startup = next(line for line in lines if line.startswith("CLI start-up"))
    assert "5.0x" in startup and "NOT verified: Caterva2" in startup
    assert startup.split()[-1] == "-"  # no copy floor for a request
    follow = next(line for line in lines if line.startswith("follow a root of 1,000 datasets"))
    assert follow.split()[-6:] == ["-"] * 6  # measured on neither side here
