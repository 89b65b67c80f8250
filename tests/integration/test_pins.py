"""Pinned roots with real processes: a broker, publishers, a subscriber, the CLI.

A pinned root becomes whole without any reader, stays whole through changes (the changed
chunks are in the cache from the event alone), survives a restart, serves every read with
its origin gone, is never evicted under pressure from another root, and a pin that cannot fit
is refused clearly. Progress (GET /v1/roots, ``replica``) is the readiness signal polled."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path

import blosc2
import httpx
import numpy as np
import pytest

from caterva.protocol.metadata import DatasetInfo
from tests.conftest import free_port
from tests.integration.authkit import GRID, cli, demo_root, wait_root
from tests.integration.test_subscriber import event_stream, next_event

ROW = 8192  # int64 values in a chunk of the noise root: 64 KiB, incompressible


@pytest.fixture
def amqtt(spawn, tmp_path) -> str:
    return spawn("bro", "--port", str(free_port()), "--statedir", str(tmp_path / "broker")).url


def noise_root(directory: Path, rows: int) -> np.ndarray:
    directory.mkdir(parents=True)
    noise = np.random.default_rng(5).integers(0, 2**62, size=(rows, ROW), dtype=np.int64)
    blosc2.asarray(noise, urlpath=str(directory / "noise.b2nd"), mode="w", chunks=(1, ROW))
    return noise


def publish(spawn, tmp_path: Path, broker: str, name: str, data: Path):
    return spawn(
        "pub",
        name,
        str(data),
        "--broker",
        broker,
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / f"pub-{name}"),
    )


def replica(http: httpx.Client, root: str) -> dict | None:
    entry = next(r for r in http.get("/roots").json()["roots"] if r["root"] == root)
    return entry["replica"]


def wait_whole(http: httpx.Client, root: str, timeout: float = 20) -> dict:
    """Poll the replica's progress until nothing is behind: the signal the API offers."""
    deadline = time.monotonic() + timeout
    while True:
        progress = replica(http, root)
        if progress and progress["behind"] == 0 and progress["bytes"]:
            return progress
        assert time.monotonic() < deadline, f"{root} never became whole: {progress}"
        time.sleep(0.02)


def held_digests(statedir: Path, root: str, path: str) -> dict[int, str]:
    """What the subscriber's cache index holds of a dataset (read-only, as it runs)."""
    db = sqlite3.connect(f"file:{statedir / 'state.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT idx, digest FROM chunks JOIN datasets ON id = dataset "
            "WHERE root = ? AND path = ?",
            (root, path),
        )
        return dict(rows)
    finally:
        db.close()


def digests(http: httpx.Client, root: str, path: str) -> dict[int, str]:
    info = DatasetInfo.from_dict(http.get(f"/roots/{root}/info/{path}").json())
    return dict(enumerate(info.digests))


def served(pub) -> dict[str, int]:
    return httpx.get(pub.url + "/v1/stats").json()["datasets"]


def read(http: httpx.Client, root: str, path: str, sel: str = "...") -> np.ndarray:
    r = http.get(f"/roots/{root}/data/{path}", params={"sel": sel})
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content), allow_pickle=False)


def test_a_pinned_root_becomes_whole_without_a_reader_and_stays_whole_through_changes(
    spawn, tmp_path, amqtt
):
    pub, sub, http = demo_root(spawn, tmp_path, amqtt, follow=False)
    done = cli("follow", "demo", "--pin", "--sub", sub.url)
    assert done.returncode == 0, done.stderr
    assert "pinned" in done.stdout
    whole = wait_whole(http, "demo")
    assert whole["bytes"] == whole["total"] and whole["problem"] is None
    assert held_digests(tmp_path / "sub", "demo", "grid.b2nd") == digests(http, "demo", "grid.b2nd")
    assert served(pub) == {"grid.b2nd": 12, "notes.txt": 1}  # every chunk, once
    listing = cli("roots", "--json", "--sub", sub.url)
    [entry] = json.loads(listing.stdout)["roots"]
    assert entry["pinned"] is True and entry["replica"]["behind"] == 0
    assert "of" in cli("roots", "--sub", sub.url).stdout.splitlines()[1]

    # a change: chunk 0 of the grid, fetched from its event alone (nobody reads)
    events = event_stream(sub.url)
    arr = blosc2.open(str(tmp_path / "data" / "grid.b2nd"), mode="a")
    arr[0:10, 0:10] = -1.0
    event = next_event(events, "update", path="grid.b2nd")
    assert event["chunks"] == [0]
    started = time.monotonic()
    want = digests(http, "demo", "grid.b2nd")
    while held_digests(tmp_path / "sub", "demo", "grid.b2nd") != want:
        assert time.monotonic() - started < 2, "the changed chunk was not refetched"
        time.sleep(0.01)
    assert served(pub) == {"grid.b2nd": 13, "notes.txt": 1}  # the changed chunk only
    assert wait_whole(http, "demo")["behind"] == 0
    assert http.get("/stats").json()["hits"] == 0  # no reader was involved

    # --no-pin: still followed, no longer pinned
    undone = cli("follow", "demo", "--no-pin", "--sub", sub.url)
    assert undone.returncode == 0 and "not pinned" in undone.stdout
    assert replica(http, "demo") is None


def test_a_pin_survives_restart_and_serves_every_read_with_the_origin_gone(spawn, tmp_path, amqtt):
    pub, sub, http = demo_root(spawn, tmp_path, amqtt, follow=False)
    r = http.put("/roots/demo/follow", params={"pin": "true"})
    assert r.status_code == 200 and r.json()["pinned"] is True
    wait_whole(http, "demo")
    before = digests(http, "demo", "grid.b2nd")
    sub.stop()
    arr = blosc2.open(str(tmp_path / "data" / "grid.b2nd"), mode="a")
    arr[20:30, 30:40] = 7.0  # the last chunk changes while the subscriber is down
    expected = GRID.copy()
    expected[20:30, 30:40] = 7.0
    sub = spawn(
        "sub", "--broker", amqtt, "--http", "127.0.0.1:0", "--statedir", str(tmp_path / "sub")
    )
    http = httpx.Client(base_url=f"{sub.url}/v1", timeout=30)
    wait_root(sub.url, "demo", pinned=True)
    deadline = time.monotonic() + 20  # the restart resyncs, and the pin fetches what changed
    while (now := digests(http, "demo", "grid.b2nd")) == before or now != held_digests(
        tmp_path / "sub", "demo", "grid.b2nd"
    ):
        assert time.monotonic() < deadline, "the replica never caught up after the restart"
        time.sleep(0.02)
    wait_whole(http, "demo")
    assert served(pub)["grid.b2nd"] == 13

    fetched = http.get("/stats").json()["misses"]  # by the pin, since the restart
    events = event_stream(sub.url)
    pub.kill()
    next_event(events, "source", online=False)
    assert np.array_equal(read(http, "demo", "grid.b2nd"), expected)
    notes = read(http, "demo", "notes.txt").tobytes()
    assert notes == b"caterva notes\n" * 100
    assert http.get("/stats").json()["misses"] == fetched  # every read from the replica


def test_a_pinned_root_is_never_evicted_under_pressure_from_another_root(spawn, tmp_path, amqtt):
    noise = noise_root(tmp_path / "other", rows=16)  # 1 MiB, where the cache holds 600 kB
    other = publish(spawn, tmp_path, amqtt, "other", tmp_path / "other")
    pub, sub, http = demo_root(spawn, tmp_path, amqtt, sub_args=("--cache-size", "600kB"))
    assert http.put("/roots/demo/follow", params={"pin": "true"}).status_code == 200
    whole = wait_whole(http, "demo")
    wait_root(sub.url, "other")
    assert http.put("/roots/other/follow").status_code == 200
    for _ in range(2):  # twice through, so the pinned chunks are the least recently used
        for row in range(16):
            assert np.array_equal(read(http, "other", "noise.b2nd", f"{row}"), noise[row])
    stats = http.get("/stats").json()
    assert stats["evicted"] > 0 and stats["used"] <= 600_000
    assert replica(http, "demo") == whole
    assert held_digests(tmp_path / "sub", "demo", "grid.b2nd") == digests(http, "demo", "grid.b2nd")
    assert served(other)["noise.b2nd"] > 16  # the other root was evicted and fetched again


def test_a_pin_that_cannot_fit_is_refused_with_a_clear_error(spawn, tmp_path, amqtt):
    pub, sub, http = demo_root(
        spawn, tmp_path, amqtt, sub_args=("--cache-size", "2kB"), follow=False
    )
    r = http.put("/roots/demo/follow", params={"pin": "true"})
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "pin_too_large"
    assert error["message"].startswith("cannot pin demo: it stores ")
    assert error["detail"]["room"] == 2000 and error["detail"]["needed"] > 2000
    assert not wait_root(sub.url, "demo")["followed"]  # refused before following
    done = cli("follow", "demo", "--pin", "--sub", sub.url)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: cannot pin demo: it stores ")
    assert "--cache-size" in done.stderr and "Traceback" not in done.stderr
    assert served(pub) == {}


def test_the_pin_setting_pins_at_start_at_the_rate_it_sets(spawn, tmp_path, amqtt):
    """A mirror's configuration: CATERVA_PIN (or `pin = [...]` in caterva.toml) follows and
    pins a root as soon as it is announced; CATERVA_PIN_RATE bounds the background fetches."""
    sub = spawn(
        "sub",
        "--broker",
        amqtt,
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "sub"),
        env={"CATERVA_PIN": "other", "CATERVA_PIN_RATE": "200kB"},
    )
    http = httpx.Client(base_url=f"{sub.url}/v1", timeout=30)
    noise_root(tmp_path / "other", rows=8)  # 512 KiB: at 200 kB/s, over 1.5 s
    publish(spawn, tmp_path, amqtt, "other", tmp_path / "other")
    wait_root(sub.url, "other", followed=True, pinned=True)
    started = time.monotonic()
    whole = wait_whole(http, "other")
    elapsed = time.monotonic() - started
    assert whole["bytes"] == whole["total"] > 400_000
    # pieces of about 200 kB, each followed by its second; the last one's wait comes after
    assert 1.5 <= elapsed < 10, elapsed
