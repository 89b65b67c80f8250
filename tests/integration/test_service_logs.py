"""What services log, read from their log files as an operator would: one line a record with
a UTC time (or one JSON object a line), uvicorn's records in the same format, the access log
only when asked, and a broker that cannot be reached said once, then its arrival."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.conftest import EXAMPLE, free_port
from tests.integration.test_subscriber import wait_until

RECORD = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) [\w.]+: ")


def records(service) -> list[str]:
    return service.log_path.read_text().splitlines()


def test_text_records_are_one_line_each_with_a_utc_time(spawn, tmp_path):
    # a long state path made rich wrap and pad one record over three lines of a log file
    state = tmp_path / ("a-state-directory-with-a-long-name-" * 3)
    broker = spawn("bro", "--port", str(free_port()), "--statedir", str(state))
    broker.stop()
    lines = records(broker)
    assert lines and all(RECORD.match(line) and line == line.rstrip() for line in lines), lines
    assert any(line.endswith(f"state in {state}") for line in lines), lines


def test_json_records_and_uvicorn_access_log_through_the_same_handler(spawn, tmp_path):
    pub = spawn(
        "pub",
        "example",
        str(EXAMPLE),
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "pub"),
        "--log-format",
        "json",
        "--access-log",
    )
    assert httpx.get(f"{pub.url}/v1/health").status_code == 200
    wait_until(lambda: "uvicorn.access" in pub.log_path.read_text())
    pub.stop()
    docs = [json.loads(line) for line in records(pub)]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(doc) for doc in docs), docs
    access = [doc for doc in docs if doc["logger"] == "uvicorn.access"]
    assert len(access) == 1 and '"GET /v1/health HTTP/1.1" 200' in access[0]["message"]
    assert RECORD.match(f"{access[0]['time']} INFO x: ")


def test_no_access_log_by_default(spawn, tmp_path):
    pub = spawn(
        "pub",
        "example",
        str(EXAMPLE),
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "pub"),
    )
    assert httpx.get(f"{pub.url}/v1/health").status_code == 200
    pub.stop()
    assert not any("/v1/health" in line for line in records(pub))


def test_unknown_log_level_or_format_is_a_usage_error(spawn, tmp_path):
    for option in (["--log-level", "loud"], ["--log-format", "xml"]):
        bro = spawn(
            "bro", "--port", str(free_port()), "--statedir", str(tmp_path), *option, wait=False
        )
        assert bro.proc.wait(timeout=15) == 2
        [line] = records(bro)
        assert line.startswith(f"error: unknown log {'level' if 'loud' in option else 'format'}")


def test_the_subscriber_says_its_cache_in_human_sizes_and_where_its_state_is(spawn, tmp_path):
    sub = spawn(
        "sub",
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "sub"),
        "--cache-size",
        "2GiB",
    )
    assert f"cache 0 B of 2.0 GiB used; state in {tmp_path / 'sub'})" in sub.log_path.read_text()


@pytest.mark.parametrize("service", ["pub", "sub"])
def test_an_unreachable_broker_is_said_once_then_its_arrival(service, spawn, tmp_path):
    port = free_port()
    args = ["pub", "example", str(EXAMPLE)] if service == "pub" else ["sub"]
    svc = spawn(
        *args,
        "--broker",
        f"mqtt://127.0.0.1:{port}",
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / service),
        "--log-level",
        "debug",
    )

    def said(text: str) -> list[str]:
        return [line for line in records(svc) if text in line]

    waiting = f"WARNING caterva.mqtt: waiting for broker mqtt://127.0.0.1:{port} "
    wait_until(lambda: len(said("still waiting for broker")) >= 2)  # retries, backing off
    assert [line.split(": ", 1)[1] for line in said("still waiting")][:2] == [
        f"still waiting for broker mqtt://127.0.0.1:{port} (Connection refused), retrying in {s} s"
        for s in (2, 4)
    ]
    broker = spawn("bro", "--port", str(port), "--statedir", str(tmp_path / "bro"))
    wait_until(lambda: said(f"connected to MQTT broker mqtt://127.0.0.1:{port} after"))
    assert len(said(waiting)) == 1 and said(waiting)[0].endswith(
        "(Connection refused), retrying in 1 s"
    ), records(svc)
    before = len(said("still waiting"))
    broker.stop()
    wait_until(lambda: len(said("still waiting")) >= before + 2)
    assert len(said("WARNING caterva.mqtt: lost the MQTT broker")) == 1, records(svc)
    assert len(said("WARNING")) == 2, records(svc)  # one per outage


@pytest.mark.parametrize("service", ["pub", "sub"])
def test_the_ready_line_says_whether_the_broker_is_connected(service, spawn, tmp_path):
    """Ready still means HTTP is up; the line also tells an operator about the broker."""
    port = free_port()
    args = ["pub", "example", str(EXAMPLE)] if service == "pub" else ["sub"]
    name = "publisher" if service == "pub" else "subscriber"

    def start(n: int):
        return spawn(
            *args,
            "--broker",
            f"mqtt://127.0.0.1:{port}",
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(tmp_path / f"{service}{n}"),
        )

    cut_off = start(1)
    assert cut_off.lines[0] == (
        f"caterva {name} ready {cut_off.url} (broker mqtt://127.0.0.1:{port} not connected)"
    )
    spawn("bro", "--port", str(port), "--statedir", str(tmp_path / "bro"))
    linked = start(2)
    assert linked.lines[0] == (
        f"caterva {name} ready {linked.url} (broker mqtt://127.0.0.1:{port} connected)"
    )
