"""Listing a followed root by prefix or glob, a page at a time, against real services (one
broker, publisher and subscriber for the module): the route and its cursor, its answers to bad
input, the Python clients paging transparently, and `caterva list` as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx
import pytest

from caterva.client import AsyncClient, Client
from caterva.errors import BadCursor, InvalidName
from caterva.protocol import rest
from tests.conftest import Services, free_port
from tests.integration.authkit import cli, demo_root, is_json_error

NAMES = sorted(
    [
        "stations/2023-12.txt",
        "stations/2024-01.txt",
        "stations/2024-02.txt",
        "stations/2024-03/extra.txt",
        "stations/[draft] notes.txt",
        "grid.txt",
        "deep/a/b/c.txt",
        *(f"many/f{i:02d}.txt" for i in range(25)),
    ]
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("listing")
    data = tmp / "data"
    for name in NAMES:
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(f"{name}\n")
    services = Services(tmp)
    try:
        broker = services.start("bro", "--port", str(free_port()), "--statedir", str(tmp / "b"))
        _, sub, http = demo_root(services.start, tmp, broker.url, data)
        yield sub.url, http
        http.close()
    finally:
        services.close()


def page(http: httpx.Client, **params) -> tuple[list[str], str | None]:
    r = http.get("/roots/demo/datasets", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-ndjson"
    entries = [json.loads(line) for line in r.text.splitlines()]
    assert all(e["kind"] == "file" and "digests" not in e for e in entries)
    return [e["path"] for e in entries], r.headers.get(rest.NEXT_HEADER)


PATTERNS = [
    ("", NAMES),
    ("stations/2024-", [n for n in NAMES if n.startswith("stations/2024-")]),
    ("stations/2024-*", ["stations/2024-01.txt", "stations/2024-02.txt"]),
    ("stations/2024-??/*", ["stations/2024-03/extra.txt"]),
    ("**/c.txt", ["deep/a/b/c.txt"]),
    ("*.txt", ["grid.txt"]),
    ("stations/[draft]*", ["stations/[draft] notes.txt"]),
    ("many/f1?.txt", [f"many/f1{i}.txt" for i in range(10)]),
    ("nothing/", []),
]


@pytest.mark.parametrize("pattern, want", PATTERNS, ids=[p[0] or "all" for p in PATTERNS])
def test_the_route_lists_by_prefix_or_glob_in_path_order(stack, pattern, want):
    _, http = stack
    assert page(http, pattern=pattern) == (want, None)


def test_the_cursor_pages_through_once(stack):
    _, http = stack
    got, cursor, pages = [], None, 0
    while True:
        paths, cursor = page(http, limit=7, **({"cursor": cursor} if cursor else {}))
        assert len(paths) == 7 or cursor is None
        got, pages = got + paths, pages + 1
        if cursor is None:
            break
    assert got == NAMES and pages == -(-len(NAMES) // 7)
    # a page that ends exactly at the last match says there is no more
    assert page(http, pattern="stations/2024-*", limit=2) == (
        ["stations/2024-01.txt", "stations/2024-02.txt"],
        None,
    )


BAD = [
    ({"cursor": "!!"}, 400, "bad_cursor"),
    ({"cursor": "QUJD"}, 400, "bad_cursor"),  # base64, but not of a cursor
    ({"cursor": "MTouLi94"}, 400, "bad_cursor"),  # "1:../x": a path outside the root
    ({"cursor": "x" * 6000}, 400, "bad_cursor"),
    ({"pattern": "../x"}, 400, "invalid_name"),
    ({"pattern": "stations/../../etc"}, 400, "invalid_name"),
    ({"pattern": "/etc/passwd"}, 400, "invalid_name"),
    ({"pattern": "a\x00b"}, 400, "invalid_name"),
    ({"pattern": "x" * 1025}, 400, "invalid_name"),
    ({"limit": "0"}, 400, "bad_request"),
    ({"limit": "10001"}, 400, "bad_request"),
    ({"limit": "many"}, 400, "bad_request"),
]


@pytest.mark.parametrize("params, status, code", BAD, ids=[str(b[0])[:40] for b in BAD])
def test_bad_input_is_a_4xx_json_error_with_a_stable_code(stack, params, status, code):
    _, http = stack
    r = http.get("/roots/demo/datasets", params=params)
    assert is_json_error(r, status, code), (r.status_code, r.text)


def test_an_unknown_root_is_404(stack):
    _, http = stack
    assert is_json_error(http.get("/roots/nosuch/datasets"), 404, "unknown_root")


def test_the_python_clients_page_transparently(stack):
    url, _ = stack
    many = [n for n in NAMES if n.startswith("many/")]
    with Client(url) as client:
        assert [d["path"] for d in client.datasets("demo")] == NAMES
        assert [d["path"] for d in client.datasets("demo", "many/*", limit=4)] == many[:4]
        first = next(client.pages("demo", "many/", limit=10))
        assert [d["path"] for d in first.datasets] == many[:10] and first.next
        rest_ = [d["path"] for d in client.datasets("demo", "many/", cursor=first.next)]
        assert rest_ == many[10:]
        with pytest.raises(BadCursor):
            list(client.datasets("demo", cursor="nope!"))
        with pytest.raises(InvalidName):
            list(client.datasets("demo", "../up"))

    async def both():
        async with AsyncClient(url) as client:
            paths = [d["path"] async for d in client.datasets("demo", "**/*.txt")]
            pages = [len(p.datasets) async for p in client.pages("demo", limit=30)]
            return paths, pages

    paths, pages = asyncio.run(both())
    assert paths == NAMES and pages == [30]


def test_cli_lists_a_pattern_and_continues_with_the_cursor(stack):
    url, _ = stack
    env = {"CATERVA_SUB": url, "COLUMNS": "200"}
    first = cli("list", "demo", "stations/2024-*", "--limit", "1", env=env)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].split() == ["path", "kind", "shape", "dtype", "size"]
    assert [line.split()[0] for line in lines[1:]] == ["stations/2024-01.txt"]
    hint = first.stderr.strip()
    assert hint.startswith("more datasets: continue with --cursor "), hint
    cursor = hint.rsplit(" ", 1)[1]
    more = cli("list", "demo", "stations/2024-*", "--cursor", cursor, env=env)
    assert (more.returncode, more.stderr) == (0, "")
    assert [line.split()[0] for line in more.stdout.splitlines()[1:]] == ["stations/2024-02.txt"]

    machine = cli("list", "demo", "many/", "--limit", "20", "--json", env=env)
    assert (machine.returncode, machine.stderr) == (0, "")
    body = json.loads(machine.stdout)
    assert body["root"] == "demo" and len(body["datasets"]) == 20 and body["next"]
    again = cli("list", "demo", "many/", "--json", "--cursor", body["next"], env=env)
    rest_ = json.loads(again.stdout)
    assert [d["path"] for d in body["datasets"] + rest_["datasets"]] == [
        n for n in NAMES if n.startswith("many/")
    ]
    assert rest_["next"] is None

    none = cli("list", "demo", "nothing*", env=env)
    assert (none.returncode, none.stdout) == (0, "no dataset of demo matches 'nothing*'\n")


@pytest.mark.parametrize(
    "args, message",
    [
        (("--cursor", "!!"), "error: invalid cursor '!!'"),
        (("../x",), "error: invalid pattern '../x'"),
        (("--limit", "0"), "Invalid value for '--limit'"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(stack, args, message):
    url, _ = stack
    result = cli("list", "demo", *args, env={"CATERVA_SUB": url})
    assert (result.returncode, result.stdout) == (2, ""), result
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_cli_stops_quietly_when_its_reader_does(stack):
    """`caterva list ROOT | head -1`: a reader that stops reading ends the listing quietly
    (exit 1, click's answer to a closed pipe), never with a traceback."""
    url, _ = stack
    proc = subprocess.Popen(
        [sys.executable, "-m", "caterva", "list", "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "CATERVA_SUB": url, "CATERVA_CONFIG": "/nonexistent"},
    )
    proc.stdout.close()  # before the first line is written
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (1, b"")


def test_the_listing_benchmark_runs(tmp_path):
    """`python -m benchmarks.listing` at a tiny scale, so it does not rot (timings are not
    judged here)."""
    from tests.conftest import ROOT

    subprocess.run(
        [sys.executable, "-m", "benchmarks.listing", "--datasets", "12", "--repeat", "1"]
        + ["--workdir", str(tmp_path)],
        check=True,
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    figures = json.loads((tmp_path / "listing-12.json").read_text())
    assert len(figures) == 8 and all(value >= 0 for value in figures.values())
    assert all(value > 0 for name, value in figures.items() if "wall" in name)
