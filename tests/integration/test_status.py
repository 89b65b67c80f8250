"""``caterva status`` against a real broker, publisher and subscriber: what a person reads and
what --json gives a script."""

from __future__ import annotations

import json

import httpx

from tests.integration.authkit import cli, tiny_root, wait_root


def test_status_human_and_json(spawn, tmp_path, broker):
    root = tiny_root(tmp_path / "data")
    pub = spawn("pub", "tiny", str(root), "--broker", broker, "--http", "127.0.0.1:0",
                "--statedir", str(tmp_path / "pub"))  # fmt: skip
    sub = spawn("sub", "--broker", broker, "--http", "127.0.0.1:0",
                "--statedir", str(tmp_path / "sub"), "--cache-size", "1MB")  # fmt: skip
    empty = cli("status", "--sub", sub.url)
    assert empty.returncode == 0, empty.stderr
    assert "no root followed" in empty.stdout
    wait_root(sub.url, "tiny")
    assert httpx.put(f"{sub.url}/v1/roots/tiny/follow").status_code == 200
    for _ in range(2):  # a miss, then a hit
        r = httpx.get(f"{sub.url}/v1/roots/tiny/data/grid.b2nd", params={"sel": "0, 0"})
        assert r.status_code == 200

    found = cli("status", "--json", "--sub", sub.url)
    assert found.returncode == 0, found.stderr
    status = json.loads(found.stdout)
    pub_id = httpx.get(f"{pub.url}/v1/health").json()["pub_id"]
    assert status["brokers"] == [{"url": broker, "connected": True}]
    assert status["cache"]["hits"] == 1 and status["cache"]["misses"] == 1
    assert status["cache"]["hit_rate"] == 0.5
    assert status["cache"]["budget"] == 1_000_000
    assert 0 < status["cache"]["used"] < 1_000_000
    [row] = status["roots"]
    assert row["root"] == "tiny" and row["source"] == pub.url and row["source_id"] == pub_id
    assert (row["hops"], row["sources_online"], row["sources"], row["in_sync"]) == (1, 1, 1, True)
    assert row["datasets"] == 2 and row["problem"] is None

    human = cli("status", "--sub", sub.url)
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0].split() == ["subscriber", sub.url, "ok"]
    assert lines[1].split() == ["brokers", broker, "connected"]
    assert "hit rate 50% (1 hit, 1 missed)" in human.stdout
    header = next(line for line in lines if line.lstrip().startswith("root"))
    assert header.split() == ["root", "source", "hops", "online", "in", "sync", "last", "event",
                              "lag", "problem"]  # fmt: skip
    row_line = next(line for line in lines if line.lstrip().startswith("tiny"))
    assert row_line.split()[:6] == ["tiny", pub.url, f"({pub_id})", "1", "1/1", "yes"]


def test_status_of_a_subscriber_that_is_not_there_fails_cleanly(tmp_path):
    gone = cli("status", "--sub", "http://127.0.0.1:9")
    assert gone.returncode != 0
    assert gone.stderr.startswith("error:") and "Traceback" not in gone.stderr
