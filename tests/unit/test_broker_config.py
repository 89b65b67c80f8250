"""The Mosquitto engine's config writer and binary lookup, and the broker's argument checks."""

from __future__ import annotations

import os
import pwd
import stat

import pytest

from caterva.broker import broker_url, mosquitto, run
from caterva.errors import BadRequest, CatervaError


def lines(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_config_listens_persists_and_logs_to_stderr(tmp_path):
    conf = lines(mosquitto.config_text("127.0.0.1", 1884, tmp_path))
    assert "listener 1884 127.0.0.1" in conf
    assert "allow_anonymous true" in conf
    assert "persistence true" in conf
    assert f"persistence_location {tmp_path}" in conf
    assert "log_dest stderr" in conf
    # as root Mosquitto would drop to user "mosquitto", who cannot write the statedir
    assert f"user {pwd.getpwuid(os.geteuid()).pw_name}" in conf
    assert len([line for line in conf if line.startswith("listener ")]) == 1


def test_config_shows_connections_only_when_verbose(tmp_path):
    assert "connection_messages false" in lines(mosquitto.config_text("::1", 1, tmp_path))
    verbose = mosquitto.config_text("::1", 1, tmp_path, verbose=True)
    assert "connection_messages true" in lines(verbose)
    assert "listener 1 ::1" in lines(verbose)


def test_config_keeps_a_statedir_with_spaces_whole(tmp_path):
    state = tmp_path / "my state"
    assert f"persistence_location {state}" in lines(mosquitto.config_text("h", 1, state))


def test_config_refuses_a_newline_that_would_inject_a_directive(tmp_path):
    with pytest.raises(BadRequest):
        mosquitto.config_text("127.0.0.1", 1884, tmp_path / "x\nallow_anonymous false")


def test_write_config_puts_mosquitto_conf_in_the_statedir(tmp_path):
    path = mosquitto.write_config("127.0.0.1", 1884, tmp_path)
    assert path == tmp_path / "mosquitto.conf"
    assert path.read_text() == mosquitto.config_text("127.0.0.1", 1884, tmp_path)


def fake_binary(directory, name="mosquitto"):
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_binary_is_found_on_path_first(tmp_path, monkeypatch):
    fake = fake_binary(tmp_path / "bin")
    monkeypatch.delenv("CATERVA_MOSQUITTO", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert mosquitto.find_binary() == str(fake)


def test_binary_can_be_named_by_environment(tmp_path, monkeypatch):
    fake = fake_binary(tmp_path / "opt", "my-mosquitto")
    monkeypatch.setenv("CATERVA_MOSQUITTO", str(fake))
    assert mosquitto.find_binary() == str(fake)


def test_missing_binary_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CATERVA_MOSQUITTO", str(tmp_path / "nowhere" / "mosquitto"))
    with pytest.raises(CatervaError, match="apt-get install mosquitto"):
        mosquitto.find_binary()


def test_unknown_engine_is_a_usage_error(tmp_path):
    with pytest.raises(BadRequest, match="amqtt or mosquitto"):
        run(engine="rabbit", port=1884, statedir=tmp_path)


def test_mosquitto_refuses_port_zero(tmp_path):
    with pytest.raises(BadRequest, match="explicit port"):
        mosquitto.serve("127.0.0.1", 0, tmp_path)


def test_broker_url_brackets_ipv6():
    assert broker_url("127.0.0.1", 1883) == "mqtt://127.0.0.1:1883"
    assert broker_url("::1", 1883) == "mqtt://[::1]:1883"
