"""/metrics of real services (broker, publisher, subscriber as child processes), scraped over
HTTP and read with the Prometheus parser: each metric moves when its event happens, no
dataset path is ever a label, and under --auth the metrics are not for anyone."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import blosc2
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.integration.authkit import bearer, cli, login, make_users, tiny_root, wait_root
from tests.integration.fakes import FakeSource, announce
from tests.unit.test_alerts import documented_metrics

CHUNK = 4096  # int64 values in a chunk: 32 KiB, incompressible
Samples = dict[tuple[str, frozenset], float]


def scrape(url: str, headers=None) -> Samples:
    r = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(url: str, ready: Callable[[Samples], bool], timeout: float = 15) -> Samples:
    """Scrape until ``ready``: events arrive when they arrive (the readiness signal here)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if ready(samples):
            return samples
        assert time.monotonic() < deadline, "the metrics never showed it"
        time.sleep(0.05)


def noise(directory: Path, name: str, seed: int) -> None:
    """8 incompressible chunks of 32 KiB, made elsewhere and moved in whole."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 2**63, size=(8, CHUNK), dtype=np.int64)
    scratch = directory.parent / f".{name}"
    blosc2.asarray(data, urlpath=str(scratch), mode="w", chunks=(1, CHUNK))
    os.replace(scratch, directory / name)


def chunk_bytes(path: Path, index: int) -> int:
    return len(blosc2.open(str(path)).schunk.get_chunk(index))


@pytest.fixture
def stack(spawn, tmp_path):
    """A broker with --metrics, a publisher of root ``demo`` and a subscriber with a cache
    too small for both datasets, following ``demo``."""
    data = tmp_path / "data"
    data.mkdir()
    noise(data, "a.b2nd", 1)
    noise(data, "b.b2nd", 2)
    bro_metrics = f"http://127.0.0.1:{free_port()}"
    broker = spawn(
        "bro",
        "--port",
        str(free_port()),
        "--statedir",
        str(tmp_path / "bro"),
        "--metrics",
        bro_metrics.removeprefix("http://"),
    ).url
    pub = spawn(
        "pub", "demo", str(data), "--broker", broker, "--http", "127.0.0.1:0",
        "--statedir", str(tmp_path / "pub"),
    )  # fmt: skip
    sub = spawn(
        "sub", "--broker", broker, "--http", "127.0.0.1:0", "--statedir", str(tmp_path / "sub"),
        "--cache-size", "400KB", "--prefer", "fake-mirror",
    )  # fmt: skip
    wait_root(sub.url, "demo")
    assert httpx.put(f"{sub.url}/v1/roots/demo/follow").status_code == 200
    return {"data": data, "broker": broker, "bro": bro_metrics, "pub": pub.url, "sub": sub.url}


def read(sub: str, path: str, sel: str) -> None:
    r = httpx.get(f"{sub}/v1/roots/demo/data/{path}", params={"sel": sel}, timeout=30)
    assert r.status_code == 200, r.text


def test_each_metric_moves_when_its_event_happens(stack):
    sub, data = stack["sub"], stack["data"]
    before = scrape(sub)
    pub_id = httpx.get(f"{stack['pub']}/v1/health").json()["pub_id"]
    assert value(before, "caterva_subscriber_source_chosen", root="demo", source=pub_id) == 1
    assert value(before, "caterva_subscriber_sources_online", root="demo") == 1
    assert value(before, "caterva_subscriber_source_hops", root="demo") == 1
    assert value(before, "caterva_subscriber_cache_budget_bytes") == 400_000

    # a read miss: one chunk fetched, its bytes counted at both ends
    read(sub, "a.b2nd", "0")
    after = scrape(sub)
    size = chunk_bytes(data / "a.b2nd", 0)
    key = {"root": "demo", "source": pub_id}
    assert value(after, "caterva_subscriber_cache_misses_total") == 1
    assert value(after, "caterva_subscriber_fetched_chunks_total", **key) == 1
    assert value(after, "caterva_subscriber_fetched_bytes_total", **key) == size
    assert value(after, "caterva_subscriber_cache_used_bytes") == size
    assert value(after, "caterva_subscriber_upstream_request_seconds_count") > value(
        before, "caterva_subscriber_upstream_request_seconds_count"
    )
    served = scrape(stack["pub"])
    assert value(served, "caterva_publisher_served_chunks_total", root="demo", route="chunks") == 1
    assert value(served, "caterva_publisher_served_bytes_total", root="demo", route="chunks") == (
        size
    )
    assert value(served, "caterva_publisher_datasets", root="demo") == 2
    assert value(served, "caterva_publisher_http_requests_total", root="demo", code="2xx") >= 2

    # the same chunk again: a hit, nothing fetched
    read(sub, "a.b2nd", "0")
    again = scrape(sub)
    assert value(again, "caterva_subscriber_cache_hits_total") == 1
    assert value(again, "caterva_subscriber_fetched_chunks_total", **key) == 1

    # both datasets do not fit in 400 KB: reading them whole evicts
    read(sub, "a.b2nd", "...")
    read(sub, "b.b2nd", "...")
    full = scrape(sub)
    assert value(full, "caterva_subscriber_cache_evictions_total") > 0
    assert value(full, "caterva_subscriber_cache_used_bytes") <= 400_000

    # a change at the origin: an event, a resync, the last-event age and the freshness lag
    noise(data, "c.b2nd", 3)
    lag = ("caterva_subscriber_freshness_lag_seconds", frozenset({"root": "demo"}.items()))
    changed = wait_for(sub, lambda s: lag in s)
    assert value(changed, "caterva_subscriber_change_events_total", root="demo") >= 1
    assert value(changed, "caterva_subscriber_resyncs_total", root="demo") >= 1
    assert value(changed, "caterva_subscriber_datasets", root="demo") == 3
    assert 0 <= value(changed, "caterva_subscriber_freshness_lag_seconds", root="demo") < 10
    assert 0 <= value(changed, "caterva_subscriber_last_event_age_seconds", root="demo") < 10
    assert value(changed, "caterva_subscriber_sequence_gaps_total", root="demo") == 0
    published = scrape(stack["pub"])
    assert value(published, "caterva_publisher_change_events_total", root="demo") >= 1
    assert value(published, "caterva_publisher_last_change_timestamp_seconds", root="demo") > (
        time.time() - 60
    )

    bro = scrape(stack["bro"])
    assert value(bro, "caterva_broker_clients_connected") >= 2
    assert value(bro, "caterva_broker_retained_messages") >= 2  # two statuses, one root
    assert value(bro, "caterva_broker_messages_received_total") >= 3
    assert value(bro, "caterva_broker_messages_sent_total") >= 3
    assert value(bro, "caterva_info", role="broker", version=_version()) == 1


def _version() -> str:
    from caterva import __version__

    return __version__


def corrupting_proxy(origin: str) -> FakeSource:
    """A mirror that forwards every request to ``origin``, and flips the last byte of each
    chunk batch it passes on (a frame's data: the length stays right, the digest fails)."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        passed = ("if-none-match", "accept-encoding")
        headers = {k: v for k, v in handler.headers.items() if k.lower() in passed}
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        r = httpx.request(handler.command, origin + handler.path, headers=headers, content=body)
        raw = r.content  # inflated, if it came gzipped: passed on plain
        if "/chunks" in handler.path and r.status_code == 200 and raw:
            raw = raw[:-1] + bytes([raw[-1] ^ 0xFF])
        handler.send_response(r.status_code)
        for name in ("content-type", "etag"):
            if name in r.headers:
                handler.send_header(name, r.headers[name])
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    return FakeSource(answer)


def test_a_chunk_failing_its_digest_is_counted_against_its_source(stack):
    sub = stack["sub"]
    pub_id = httpx.get(f"{stack['pub']}/v1/health").json()["pub_id"]
    fake = corrupting_proxy(stack["pub"])
    try:
        announce(stack["broker"], "fake-mirror", "demo", fake.url, origin=pub_id)
        chosen = {"root": "demo", "source": "fake-mirror"}
        wait_for(sub, lambda s: value(s, "caterva_subscriber_source_chosen", **chosen) == 1)
        read(sub, "b.b2nd", "5")  # from the mirror: fails its digest; then from the origin
        after = scrape(sub)
    finally:
        fake.close()
    failed = {"root": "demo", "source": "fake-mirror"}
    assert value(after, "caterva_subscriber_digest_failures_total", **failed) == 1
    assert value(after, "caterva_subscriber_fetched_chunks_total", **failed) == 1
    origin = {"root": "demo", "source": pub_id}
    assert value(after, "caterva_subscriber_fetched_chunks_total", **origin) == 1
    assert value(after, "caterva_subscriber_sources_online", root="demo") == 2


def test_no_dataset_path_is_a_label_even_with_thousands_of_datasets(spawn, tmp_path, broker):
    data = tmp_path / "many"
    data.mkdir()
    values = np.arange(10)
    for n in range(2000):
        blosc2.asarray(values, urlpath=str(data / f"d{n:04d}.b2nd"), mode="w")
    pub = spawn(
        "pub", "many", str(data), "--broker", broker, "--http", "127.0.0.1:0",
        "--statedir", str(tmp_path / "pub"),
    )  # fmt: skip
    sub = spawn(
        "sub", "--broker", broker, "--http", "127.0.0.1:0", "--statedir", str(tmp_path / "sub")
    )
    wait_root(sub.url, "many")
    assert httpx.put(f"{sub.url}/v1/roots/many/follow", timeout=60).status_code == 200
    for n in range(0, 2000, 100):  # a read in each of 20 datasets
        r = httpx.get(f"{sub.url}/v1/roots/many/data/d{n:04d}.b2nd", timeout=30)
        assert r.status_code == 200, r.text
    for url in (pub.url, sub.url):
        samples = scrape(url)
        labels = {v for _, pairs in samples for _, v in pairs}
        assert not [v for v in labels if v.endswith(".b2nd")], url
        assert len(samples) < 200, f"{url}: {len(samples)} series"
    assert value(scrape(pub.url), "caterva_publisher_datasets", root="many") == 2000


def test_metrics_under_auth_are_not_for_anyone(spawn, tmp_path, broker):
    root = tiny_root(tmp_path / "data")
    spawn("pub", "tiny", str(root), "--broker", broker, "--http", "127.0.0.1:0",
          "--statedir", str(tmp_path / "pub"))  # fmt: skip
    state = tmp_path / "sub"
    state.mkdir()
    make_users(state / "users.db", {"all@x.org": ["tiny"], "none@x.org": []})
    apart = f"127.0.0.1:{free_port()}"
    sub = spawn(
        "sub", "--broker", broker, "--http", "127.0.0.1:0", "--statedir", str(state),
        "--auth", "--metrics", apart,
    )  # fmt: skip
    anonymous = httpx.get(f"{sub.url}/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    granted = bearer(login(sub.url, "all@x.org"))
    wait_root(sub.url, "tiny", headers=granted)
    assert httpx.put(f"{sub.url}/v1/roots/tiny/follow", headers=granted).status_code == 200
    # a user without a grant on every followed root is refused what sums them all
    ungranted = bearer(login(sub.url, "none@x.org"))
    assert httpx.get(f"{sub.url}/metrics", headers=ungranted).status_code == 403
    assert value(scrape(sub.url, granted), "caterva_subscriber_datasets", root="tiny") == 2
    # the separate address needs no token: it is where only the scraper reaches
    assert value(scrape(f"http://{apart}"), "caterva_subscriber_datasets", root="tiny") == 2
    assert httpx.get(f"http://{apart}/v1/roots").status_code == 404


def exported(url: str) -> set[str]:
    """The metric names a service exposes (counters with their ``_total``), samples or not;
    not the ``_created`` times prometheus_client adds to a histogram."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        f.name + "_total" if f.type == "counter" else f.name
        for f in text_string_to_metric_families(text)
        if not f.name.endswith("_created")
    }


def test_the_services_export_exactly_the_documented_metrics(stack):
    read(stack["sub"], "a.b2nd", "0")  # some labelled series exist only once counted
    names = set().union(*(exported(stack[s]) for s in ("bro", "pub", "sub")))
    assert names == documented_metrics()


def test_metrics_options_that_cannot_work_fail_before_anything_starts(tmp_path):
    mosquitto = cli("bro", "--engine", "mosquitto", "--metrics", "127.0.0.1:9",
                    "--statedir", str(tmp_path / "bro"))  # fmt: skip
    assert mosquitto.returncode == 2 and "$SYS" in mosquitto.stderr
    no_port = cli("pub", "x", str(tmp_path), "--metrics", "127.0.0.1",
                  "--statedir", str(tmp_path / "pub"))  # fmt: skip
    assert no_port.returncode == 2 and "names no port" in no_port.stderr
    assert "Traceback" not in mosquitto.stderr + no_port.stderr
