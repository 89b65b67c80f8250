"""Bounded whatever a peer sends: request bodies, batch frames, silent sources, MQTT payloads,
and files being written in place at a publisher. Real services, real brokers, real sockets.

    broker <- publisher of "demo" (tiny_root) <- subscriber      (module stack)
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import pytest

from caterva.protocol import rest, topics
from caterva.protocol.layout import describe
from tests.conftest import ROOT, Services
from tests.integration.authkit import GRID, tiny_root, wait_root
from tests.integration.fakes import (
    BIG,
    FakeSource,
    Silent,
    announce,
    connect,
    post_head,
    publish_raw,
    read_answer,
    send_json,
)


class Stack(Services):
    def __init__(self, tmp) -> None:
        super().__init__(tmp)
        self.tmp = tmp
        self.data = tiny_root(tmp / "demo")
        self.broker = self.start("bro", "--port", "0", "--statedir", str(tmp / "bro")).url
        self.pub = self.start(
            "pub",
            "demo",
            str(self.data),
            "--broker",
            self.broker,
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(tmp / "pub"),
            wait=False,
        )
        # a source that stays silent counts as offline after 1 s, not 10 (source_timeout)
        self.sub = self.start(
            "sub",
            "--broker",
            self.broker,
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(tmp / "sub"),
            env={"CATERVA_SOURCE_TIMEOUT": "1"},
            wait=False,
        )
        self.pub.wait_ready()
        self.sub.wait_ready()
        wait_root(self.sub.url, "demo")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("bounds"))
    try:
        yield stack
    finally:
        stack.close()


def refused_before_reading(
    url: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    """Announce a BIG body and send none of it: the answer must come anyway (a service that
    waits for the body before deciding would never answer; the socket timeout fails it)."""
    with connect(url) as sock:
        sock.sendall(post_head(url, path, headers, **{"Content-Length": str(BIG)}))
        return read_answer(sock)


def refused_while_reading(url: str, path: str) -> tuple[int, dict]:
    """A chunked body (no length said) sent a piece at a time and never finished: the answer
    must come once the limit is passed, and the service answers others meanwhile."""
    with connect(url) as sock:
        sock.sendall(post_head(url, path, **{"Transfer-Encoding": "chunked"}))
        piece = b"[" * 65536
        stop = threading.Event()

        def send() -> None:  # 16 MiB at most, then silence (the body never ends)
            try:
                for _ in range(256):
                    if stop.is_set():
                        return
                    sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            except OSError:
                pass  # the service answered and closed

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            assert httpx.get(f"{url}/v1/health", timeout=20).status_code == 200
            return read_answer(sock)
        finally:
            stop.set()


@pytest.mark.parametrize("service", ["pub", "sub"])
def test_a_huge_body_is_refused_before_it_is_read_or_parsed(stack, service):
    url = getattr(stack, service).url
    path = rest.chunks_of_many("demo")
    status, body = refused_before_reading(url, path)
    assert (status, body["error"]["code"]) == (413, "body_too_large"), body
    status, body = refused_while_reading(url, path)
    assert (status, body["error"]["code"]) == (413, "body_too_large"), body

    # the same 43 MB of JSON through an ordinary client, while another one checks health
    huge = json.dumps({"datasets": [{"path": "grid.b2nd", "i": "0"}] * (BIG // 32)}).encode()
    assert len(huge) > BIG
    answers: dict[str, int] = {}

    def post() -> None:
        answers["post"] = httpx.post(
            url + path, content=huge, timeout=60, headers={"Content-Type": "application/json"}
        ).status_code

    poster = threading.Thread(target=post)
    poster.start()
    answers["health"] = httpx.get(f"{url}/v1/health", timeout=20).status_code
    poster.join()
    assert answers == {"post": 413, "health": 200}

    # and a body of a sane size still works
    if service == "sub":
        assert httpx.put(f"{url}/v1/roots/demo/follow").status_code == 200
    r = httpx.post(url + path, json={"datasets": [{"path": "grid.b2nd", "i": "0-1"}]})
    assert r.status_code == 200 and r.headers["content-type"] == rest.BATCH_TYPE, r.text


# --- frames: a source that claims 2**40 bytes, then sends 200 MB -----------------------------

READER = r"""
import asyncio, json, resource, sys

def peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

async def subscriber(url):  # how a subscriber reads a source (caterva.subscriber.upstream)
    from caterva.subscriber import upstream
    async with upstream.new_client() as client:
        source = upstream.Source(client, url)
        info = await source.info("demo", "grid.b2nd")
        before = peak()
        try:
            async for _ in source.chunks("demo", [(info, [0, 1])]):
                pass
        except Exception as exc:
            return before, f"{type(exc).__name__}: {exc}"
        return before, None

def client(url):  # how the Python client reads a subscriber
    import caterva
    with caterva.Client(url) as c:
        ds = c.dataset("demo/grid.b2nd")
        before = peak()
        try:
            ds[0:10, 0:20]
        except Exception as exc:
            return before, f"{type(exc).__name__}: {exc}"
        return before, None

which, url = sys.argv[1:]
before, error = asyncio.run(subscriber(url)) if which == "subscriber" else client(url)
print(json.dumps({"grew": peak() - before, "error": error}))
"""


def huge_frame_source(info_body: bytes) -> FakeSource:
    """Answers the dataset's info, and any batch with a frame for chunk 0 whose header claims
    2**40 bytes, followed by 200 MB."""

    def answer(handler) -> None:
        if "/info/" in handler.path:
            return send_json(handler, 200, info_body)
        handler.send_response(200)
        handler.send_header("Content-Type", rest.BATCH_TYPE)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(rest.FRAME.pack(0, 2**40, bytes(16)))
        block = bytes(1 << 20)
        for _ in range(200):
            handler.wfile.write(block)

    return FakeSource(answer)


@pytest.mark.parametrize("reader", ["subscriber", "client"])
def test_a_frame_bigger_than_a_chunk_fails_at_its_header_in_bounded_memory(tmp_path, reader):
    import blosc2

    array = blosc2.open(str(tiny_root(tmp_path / "demo") / "grid.b2nd"))
    info = describe(array, "grid.b2nd", "b2nd", size=0, mtime=0.0)
    source = huge_frame_source(info.to_bytes())
    try:
        done = subprocess.run(
            [sys.executable, "-c", READER, reader, source.url],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={"CATERVA_CONFIG": "/nonexistent", "PATH": ""},
        )
    finally:
        source.close()
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["error"] and "announced 1099511627776 bytes for chunk 0" in result["error"]
    assert result["grew"] < 50 * 2**20, result  # not the 200 MB that followed the header


# --- a source that accepts connections and never answers ------------------------------------


def test_a_silent_source_fails_a_follow_at_the_read_timeout(stack):
    silent = Silent()
    try:
        announce(stack.broker, "silent", "ghost", silent.url, origin="silent")
        wait_root(stack.sub.url, "ghost", source=silent.url)
        # source_timeout is 1 s here: the follow fails with source_offline long before the 30 s
        # a request may otherwise take (this client gives up at 20 s)
        r = httpx.put(f"{stack.sub.url}/v1/roots/ghost/follow", timeout=20)
        assert r.status_code == 503 and r.json()["error"]["code"] == "source_offline", r.text
    finally:
        silent.close()
        announce(stack.broker, "silent", "ghost", silent.url, origin="silent", state="offline")


# --- MQTT ---------------------------------------------------------------------------------


def test_hostile_mqtt_payloads_are_one_warning_each_never_a_traceback(stack):
    nested = b"[" * 100_000 + b"]" * 100_000
    bad = {
        topics.status("evil"): nested,
        topics.root("evil", "demo"): b'{"proto": 1, "x": ' + nested + b"}",
        topics.changes("evil", "demo"): nested,
        topics.root("evil", "big"): b" " * (9 << 20) + b"{}",  # more than an MQTT message may be
    }
    for topic, payload in bad.items():
        publish_raw(stack.broker, topic, payload)
    # one more source, heard after them on the same connection: once it is listed, all are in
    announce(stack.broker, "after-evil", "marker", "http://127.0.0.1:9", origin="after-evil")
    wait_root(stack.sub.url, "marker")
    log = stack.sub.log_path.read_text()
    assert "Traceback" not in log and "RecursionError" not in log, log[-3000:]
    flat = " ".join(log.split())  # log records are wrapped to the terminal's width
    for topic in bad:
        assert flat.count(f" on {topic}: ") == 1, (topic, log[-3000:])


# --- a publisher's file being written in place --------------------------------------------


def test_a_file_being_written_in_place_is_never_served(stack, tmp_path):
    import blosc2

    pub = httpx.Client(base_url=stack.pub.url, timeout=10)
    versions = []
    for n, name in enumerate(("v1.b2nd", "v2.b2nd")):
        blosc2.asarray(
            GRID * (n + 1), urlpath=str(tmp_path / name), mode="w", chunks=(10, 10), blocks=(5, 5)
        )
        versions.append((tmp_path / name).read_bytes())
    path = stack.data / "rewritten.b2nd"
    path.write_bytes(versions[0])  # a new file; "written by rename" in spirit: it is whole
    etag = wait_described(pub, None)
    nchunks = pub.get(rest.info("demo", "rewritten.b2nd")).json()["nchunks"]
    with open(path, "r+b") as f:  # a writer rewriting it in place, 80 % done
        f.truncate(0)
        f.write(versions[1][: len(versions[1]) * 4 // 5])
        f.flush()
        r = pub.get(rest.file("demo", "rewritten.b2nd"))
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", r.status_code
        for index in range(nchunks):
            r = pub.get(rest.chunk("demo", "rewritten.b2nd", index))
            assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable", index
        f.write(versions[1][len(versions[1]) * 4 // 5 :])
    wait_described(pub, etag)  # written: once a scan has described it, it is served whole
    r = pub.get(rest.file("demo", "rewritten.b2nd"))
    assert r.status_code == 200 and r.content == versions[1]


def wait_described(pub: httpx.Client, old_etag: str | None) -> str:
    """The etag of rewritten.b2nd once the publisher describes it with another than
    ``old_etag`` (scans follow the directory's changes; no other signal is exposed)."""
    deadline = time.monotonic() + 10
    while True:
        r = pub.get(rest.info("demo", "rewritten.b2nd"))
        if r.status_code == 200 and r.json()["etag"] != old_etag:
            return r.json()["etag"]
        assert time.monotonic() < deadline, "the file was never described"
        time.sleep(0.05)


def test_a_file_that_changes_while_it_is_sent_is_cut_short(stack):
    import os

    import numpy as np

    path = stack.data / "big.bin"
    path.write_bytes(np.random.default_rng(1).bytes(32 << 20))  # more than socket buffers
    pub = httpx.Client(base_url=stack.pub.url, timeout=30)
    deadline = time.monotonic() + 20
    while pub.get(rest.info("demo", "big.bin")).status_code != 200:
        assert time.monotonic() < deadline, "big.bin was never described"
        time.sleep(0.05)
    with pub.stream("GET", rest.file("demo", "big.bin")) as r:
        assert r.status_code == 200
        pieces = r.iter_raw(1 << 16)
        next(pieces)
        with open(path, "r+b") as f:  # written in place while it is being sent
            f.write(b"changed")
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in pieces:
                pass
    os.unlink(path)
