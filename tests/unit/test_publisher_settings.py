"""Publisher settings and the errors `caterva pub` raises before anything starts (no sockets)."""

from __future__ import annotations

import pytest

import caterva.publisher
from caterva.config import listen_address
from caterva.errors import BadRequest, InvalidName, NotFound
from caterva.publisher.settings import Settings


@pytest.fixture(autouse=True)
def no_config(monkeypatch):
    monkeypatch.setenv("CATERVA_CONFIG", "/nonexistent")
    for name in ("BROKER", "PUBLISHER_HTTP", "SUBSCRIBER_HTTP", "SCAN_INTERVAL", "STATEDIR"):
        monkeypatch.delenv(f"CATERVA_{name}", raising=False)


def test_build_resolves_and_defaults(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    s = Settings.build(name="demo", directory="data", url="http://x", statedir=tmp_path / "st")
    assert s.directory == (tmp_path / "data").resolve()
    assert s.statedir == (tmp_path / "st" / "demo").resolve() and s.statedir.is_dir()
    assert (s.broker, s.scan_interval) == ("mqtt://127.0.0.1:1883", 0.2)
    monkeypatch.setenv("CATERVA_SCAN_INTERVAL", "0.5")
    assert Settings.build(name="demo", directory="data", url="", statedir="st").scan_interval == 0.5


def test_listen_address():
    """The publisher's and the subscriber's, both from caterva.config.DEFAULTS."""
    assert listen_address("publisher_http") == ("127.0.0.1", 8470)
    assert listen_address("publisher_http", ":0") == ("127.0.0.1", 0)
    assert listen_address("publisher_http", "0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert listen_address("subscriber_http") == ("127.0.0.1", 8471)
    assert listen_address("subscriber_http", "0.0.0.0") == ("0.0.0.0", 8471)
    with pytest.raises(BadRequest):
        listen_address("publisher_http", "host:99999")


@pytest.mark.parametrize(
    ("name", "directory", "broker", "error"),
    [
        ("bad name", "data", None, InvalidName),
        ("demo", "missing", None, NotFound),
        ("demo", "file.txt", None, BadRequest),
        ("demo", "data", "http://not-mqtt", BadRequest),
    ],
)
def test_run_raises_caterva_errors_for_bad_input(
    tmp_path, monkeypatch, name, directory, broker, error
):
    (tmp_path / "data").mkdir()
    (tmp_path / "file.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    started = []
    monkeypatch.setattr("caterva.service.runner.run", lambda *a, **k: started.append(a))
    with pytest.raises(error):
        caterva.publisher.run(
            name=name,
            directory=directory,
            broker=broker,
            http="127.0.0.1:0",
            statedir=tmp_path / "state",
        )
    assert started == []
