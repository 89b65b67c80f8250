"""The local handoff (caterva/subscriber/handoff.py) against a real subscriber: a ticket is one
use of one file, the socket takes only a ticket and a regular file open for writing, what it
writes is the /file answer byte for byte, and a client that hangs up leaves nothing open."""

from __future__ import annotations

import contextlib
import json
import os
import socket

import pytest

from caterva.client import Client
from tests.integration.test_subscriber import followed_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from followed_stack(tmp_path_factory, "handoff")


def ticket(stack, path: str = "noise.b2nd") -> dict:
    r = stack.http.post(f"/roots/demo/handoff/{path}")
    assert r.status_code == 200, r.text
    return r.json()


def hand(answer: dict, message: bytes | None = None, fds: tuple[int, ...] = ()) -> list[dict]:
    """Send ``message`` (the answer's ticket by default) with ``fds``; every reply, in order."""
    if message is None:
        message = json.dumps({"ticket": answer["ticket"]}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(30)
        sock.connect("\0" + answer["socket"])
        socket.send_fds(sock, [message], list(fds))
        replies = []
        while (reply := sock.recv(1 << 16)) != b"":
            replies.append(json.loads(reply))
            if "written" not in replies[-1]:
                return replies
    raise AssertionError(f"the socket closed after {replies}")


def code(replies: list[dict]) -> str:
    return replies[-1]["error"]["code"]


def test_what_the_subscriber_writes_is_the_file_answer(stack, tmp_path):
    stack.http.get("/roots/demo/file/noise.b2nd")  # cached whole
    answer = ticket(stack)
    out = tmp_path / "noise.b2nd"
    fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        replies = hand(answer, fds=(fd,))
    finally:
        os.close(fd)
    assert replies[-1] == {"size": answer["size"]}
    assert all(r["written"] <= answer["size"] for r in replies[:-1])
    assert out.read_bytes() == stack.http.get("/roots/demo/file/noise.b2nd").content
    assert answer["etag"] == stack.http.get("/roots/demo/info/noise.b2nd").json()["etag"]
    # one use
    fd = os.open(out, os.O_RDWR)
    try:
        assert code(hand(answer, fds=(fd,))) == "not_found"
    finally:
        os.close(fd)


def test_the_socket_takes_a_ticket_and_a_regular_file_open_for_writing(stack, tmp_path):
    target = tmp_path / "t"
    target.write_bytes(b"")
    read_only = os.open(target, os.O_RDONLY)
    appending = os.open(target, os.O_WRONLY | os.O_APPEND)
    directory = os.open(tmp_path, os.O_RDONLY)
    pipe_r, pipe_w = os.pipe()
    writable = os.open(target, os.O_WRONLY)
    try:
        for fds in ((), (read_only,), (appending,), (directory,), (pipe_w,)):
            assert code(hand(ticket(stack), fds=fds)) == "bad_request", fds
        assert code(hand(ticket(stack), b"{}", (writable,))) == "not_found"
        assert code(hand(ticket(stack), b"not json", (writable,))) == "not_found"
        made_up = {**ticket(stack), "ticket": "0" * 32}
        assert code(hand(made_up, fds=(writable,))) == "not_found"
        too_long = json.dumps({"ticket": ticket(stack)["ticket"], "pad": "x" * 8192}).encode()
        assert code(hand(ticket(stack), too_long, (writable,))) == "not_found"
        assert target.read_bytes() == b""  # nothing was written through any of them
    finally:
        for fd in (read_only, appending, directory, pipe_r, pipe_w, writable):
            os.close(fd)


def held(pid: int, *places) -> list[str]:
    """The files in (or being) ``places`` that process ``pid`` has open."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed meanwhile
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            found += [target for place in places if target.startswith(str(place))]
    return found


def test_a_client_that_hangs_up_leaves_nothing_open(stack, tmp_path):
    """Each client sends its ticket and file, says it will send nothing more and waits for the
    subscriber to close the connection (without reading the file); by then neither the client's
    file nor any cached chunk file is open in the subscriber."""
    stack.http.get("/roots/demo/file/noise.b2nd")  # cached whole: two windows of files
    for n in range(5):
        answer = ticket(stack)
        target = tmp_path / f"gone{n}"
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
            sock.settimeout(30)
            sock.connect("\0" + answer["socket"])
            socket.send_fds(sock, [json.dumps({"ticket": answer["ticket"]}).encode()], [fd])
            os.close(fd)
            sock.shutdown(socket.SHUT_WR)  # hung up: the subscriber stops at its next write
            while sock.recv(1 << 16) != b"":
                pass  # its progress and error replies, until it closes the connection
        assert held(stack.sub.proc.pid, target, stack.tmp / "substate" / "chunks") == []


def test_a_client_on_this_machine_downloads_through_the_handoff(stack, tmp_path, monkeypatch):
    """The client asks for a ticket and never uses /file; its file lands whole."""
    from caterva.client import download

    stack.http.get("/roots/demo/file/noise.b2nd")
    monkeypatch.setattr(download, "FrameFile", None)  # /file is not taken
    progress = []
    with Client(stack.sub.url) as client:
        assert client.local
        got = client.download("demo/noise.b2nd", tmp_path, progress=lambda *a: progress.append(a))
    assert got.read_bytes() == stack.http.get("/roots/demo/file/noise.b2nd").content
    total = progress[-1][1]
    assert progress[0] == (0, total) and progress[-1] == (total, total)
