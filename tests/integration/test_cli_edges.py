"""The CLI at its edges, against real services: names that look like rich markup, emoji codes
or control characters print as they are; `download -o` never replaces what it should not;
Ctrl-C stops a root download at once (sync and async clients); a root changing under a
download; `--sub` aimed at a broker or a publisher.

Commands run in process through ``run_command()`` (``run``, from test_cli_stack) unless the
process itself matters (Ctrl-C, standard output as bytes), which runs ``python -m caterva``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import blosc2
import numpy as np
import pytest

from caterva.client import Client
from caterva.client.lean import Pool
from tests.conftest import ROOT
from tests.integration import test_cli_stack
from tests.integration.test_cli_stack import command, env_for
from tests.integration.test_client_stack import Stack, wait_event

run = test_cli_stack.run  # the fixture: `caterva ARGS` in process, through run_command()

# names a user may give files: markup, emoji codes, brackets, colons, unprintables
NASTY = [
    "[draft] notes:fire:.txt",
    "a:100:b.txt",
    "[red]x[/red].txt",
    "[bold]dir[/bold]/inner [link=x]y[/link].txt",
    "sel[0:4].txt",
    "rtl\u202eexe.txt",  # RIGHT-TO-LEFT OVERRIDE: would reorder the terminal line
    "nel\x85x.txt",  # a C1 control character
    "émoji 🔥 ünï.txt",
]
SHOWN = {  # how a name with unprintable characters is printed: escaped, Python style
    "rtl\u202eexe.txt": "rtl\\u202eexe.txt",
    "nel\x85x.txt": "nel\\x85x.txt",
}
BIG = "big.b2nd"  # big enough that a slow link takes seconds to carry it


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("cli-edges"))
    try:
        stack.follow()
        with Client(stack.url) as client, client.watch("demo") as events:
            for name in NASTY:
                (stack.data / name).parent.mkdir(parents=True, exist_ok=True)
                (stack.data / name).write_text(f"contents of {name}\n")
            noise = np.random.default_rng(1).integers(0, 255, 6 * 2**20, dtype=np.uint8)
            blosc2.asarray(noise, urlpath=str(stack.data / BIG), mode="w", chunks=(2**18,))
            missing = {*NASTY, BIG}
            for event in events:  # in whatever order the publisher saw them
                if event["event"] == "create":
                    missing.discard(event["path"])
                if not missing:
                    break
        yield stack
    finally:
        stack.close()


# --- names print as they are ----------------------------------------------------------------


@pytest.mark.parametrize("name", NASTY)
def test_names_print_literally(run, name, tmp_path, monkeypatch):
    shown = SHOWN.get(name, name)
    listed = run("list", "demo")
    assert listed.code == 0, listed.err
    assert any(line.split("  ")[0].strip() == shown for line in listed.out.splitlines()), listed.out
    assert name in [d["path"] for d in run("list", "demo", "--json").json()["datasets"]]
    tree = run("list", "demo", "--tree").out
    assert shown.rsplit("/", 1)[-1] in tree
    info = run("info", f"demo/{name}")
    assert info.out.splitlines()[0].split(None, 1)[1] == f"demo/{shown}"
    assert run("info", f"demo/{name}", "--json").json()["address"] == f"demo/{name}"
    monkeypatch.chdir(tmp_path)
    saved = run("download", f"demo/{name}")
    base = shown.rsplit("/", 1)[-1]
    assert saved.out.startswith(f"saved demo/{shown} to {base} ("), saved.out
    assert (tmp_path / name.rsplit("/", 1)[-1]).read_text() == f"contents of {name}\n"
    again = run("download", f"demo/{name}", "--force", "--json").json()
    assert (again["address"], again["dest"]) == (f"demo/{name}", name.rsplit("/", 1)[-1])
    missing = run("info", f"demo/{name}.nope")
    assert (missing.code, missing.err.count("\n")) == (3, 1)
    assert f"{shown}.nope" in missing.err, missing.err


# --- download -o ----------------------------------------------------------------------------


def test_download_refuses_to_replace_a_file_unless_forced(run, stack, tmp_path):
    dest = tmp_path / "blob"
    dest.write_bytes(b"precious")
    refused = run("download", "demo/blob.bin", "-o", str(dest))
    assert (refused.code, refused.out) == (2, "")
    assert refused.err == f"error: {dest} exists already: not replaced (--force replaces it)\n"
    assert dest.read_bytes() == b"precious"
    assert run("download", "demo/blob.bin", "-o", str(dest), "--overwrite").code == 0
    assert dest.read_bytes() == stack.originals["blob.bin"]
    (tmp_path / "root" / "docs").mkdir(parents=True)
    (tmp_path / "root" / "docs" / "notes.txt").write_text("mine")
    whole = run("download", "demo", "-o", str(tmp_path / "root"))
    assert whole.code == 2 and "notes.txt exists already" in whole.err
    assert (tmp_path / "root" / "docs" / "notes.txt").read_text() == "mine"


def test_download_writes_through_symlinks_and_fifos(run, stack, tmp_path):
    real = tmp_path / "real.bin"
    real.write_bytes(b"")  # empty: what a shell's `>` leaves, nothing to lose
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    assert run("download", "demo/blob.bin", "-o", str(link)).code == 0
    assert link.is_symlink() and real.read_bytes() == stack.originals["blob.bin"]

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    result = run("download", "demo/blob.bin", "-o", str(fifo), "--json")
    reader.join(timeout=30)
    assert result.code == 0, result.err
    assert result.json()["bytes"] is None and got == [stack.originals["blob.bin"]]
    assert fifo.exists() and not fifo.is_file()  # still the FIFO, not replaced
    assert list(tmp_path.glob("*.part")) == []


def test_download_to_standard_output(stack, tmp_path):
    proc = subprocess.run(
        command("download", "demo/blob.bin", "-o", "-"),
        capture_output=True,
        env=env_for(stack),
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == stack.originals["blob.bin"] and proc.stderr == b""
    assert list(tmp_path.iterdir()) == []  # no file named "-"


@pytest.mark.parametrize(
    "args, message",
    [
        (("demo/blob.bin", "-o", "{tmp}/no/such/dir/x.bin"), "no directory {tmp}/no/such/dir"),
        (("demo", "-o", "{tmp}/no/such/dir"), "no directory {tmp}/no/such"),
        (("demo", "-o", "-"), "not a root"),
    ],
)
def test_download_usage_errors(run, tmp_path, args, message):
    result = run("download", *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert (result.code, result.out, result.err.count("\n")) == (2, "", 1), result
    assert message.replace("{tmp}", str(tmp_path)) in result.err
    assert not (tmp_path / "no").exists()


def test_a_stale_part_file_is_replaced(run, stack, tmp_path):
    (tmp_path / "blob.bin.part").write_bytes(b"left by a killed download")
    assert run("download", "demo/blob.bin", "-o", str(tmp_path)).code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.bin"]


def test_a_failed_root_download_leaves_no_directory(run, tmp_path, monkeypatch):
    from caterva.client import transfer

    def full_disk(self):
        raise OSError(28, "No space left on device", str(self.target))

    monkeypatch.setattr(transfer.Assembler, "open", full_disk)
    result = run("download", "demo", "-o", str(tmp_path / "new"))
    assert result.code == 1 and "No space left on device" in result.err, result
    assert list(tmp_path.iterdir()) == []


# --- a root that changes during a download --------------------------------------------------


@pytest.mark.parametrize("when", ["before the client lists", "after the client lists"])
def test_a_root_changing_under_a_download_is_no_traceback(run, stack, tmp_path, monkeypatch, when):
    gone = stack.data / "tide" / "levels.b2nd"
    kept = gone.read_bytes()
    request = Pool.request

    def remove() -> None:
        with Client(stack.url) as client, client.watch("demo") as events:
            gone.unlink()
            wait_event(events, event="delete", path="tide/levels.b2nd")

    @contextmanager
    def list_then_remove(self, method, url, *args):  # the change comes with the root's listing
        listing = urlsplit(url).path.endswith("/manifest") and gone.exists()
        if listing and when.startswith("before"):
            remove()
        with request(self, method, url, *args) as answer:
            if listing and when.startswith("after"):
                answer.read()
                remove()
            yield answer

    monkeypatch.setattr(Pool, "request", list_then_remove)
    try:
        result = run("download", "demo", "-o", str(tmp_path / "out"), "--json")
    finally:
        monkeypatch.undo()
        with Client(stack.url) as client, client.watch("demo") as events:
            gone.write_bytes(kept)
            wait_event(events, event="create", path="tide/levels.b2nd")
    if when.startswith("before"):  # the download saw the new root: it reports what it wrote
        assert result.code == 0, result.err
        assert "tide/levels.b2nd" not in [f["path"] for f in result.json()["files"]]
    else:
        assert (result.code, result.out, result.err.count("\n")) == (3, "", 1), result
        assert result.err.startswith("error: ") and "levels.b2nd" in result.err
    assert not list(tmp_path.rglob("*.part"))


# --- Ctrl-C ---------------------------------------------------------------------------------


class SlowLink:
    """A TCP proxy to the subscriber that carries its answers at ``rate`` bytes/s, so a
    download takes seconds on loopback."""

    def __init__(self, url: str, rate: int) -> None:
        self.upstream = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        self.rate = rate
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.server.accept()
            except OSError:
                return
            far = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(near, far, 0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(far, near, self.rate), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, rate: int) -> None:
        try:
            while data := src.recv(16384):
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)  # the throttle itself, not a wait
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def close(self) -> None:
        self.server.close()


ASYNC_DOWNLOAD = """
import asyncio, sys
from caterva.client import AsyncClient

async def main():
    async with AsyncClient(sys.argv[1]) as client:
        await client.download("demo", sys.argv[2])

asyncio.run(main())
"""


@pytest.mark.parametrize("client", ["sync (the CLI)", "async"])
def test_ctrl_c_stops_a_root_download_at_once(stack, tmp_path, client):
    link = SlowLink(stack.url, rate=1_000_000)  # ~6 s for the whole root
    dest = tmp_path / "out"
    args = (
        command("download", "demo", "-o", str(dest), "--sub", link.url)
        if client.startswith("sync")
        else [sys.executable, "-c", ASYNC_DOWNLOAD, link.url, str(dest)]
    )
    # a child inherits an ignored SIGINT from a non-interactive shell: give it Ctrl-C back
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(None),
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 30
        while not list(dest.rglob("*.part")):  # the download is under way
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.01)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        took = time.monotonic() - sent
        _, err = proc.communicate()
    finally:
        proc.kill()
        link.close()
    print(f"{client}: stopped {took:.2f} s after Ctrl-C")
    assert code in (130, -signal.SIGINT), err
    assert b"Traceback" not in err or client == "async", err
    assert took < 1.0, f"took {took:.2f} s to stop"
    assert not list(dest.rglob("*.part")) if dest.exists() else True
    if dest.exists():  # whatever has a final name is whole
        for path in dest.rglob("*"):
            if path.is_file():
                name = str(path.relative_to(dest))
                want = stack.originals.get(name)
                if isinstance(want, bytes):
                    assert path.read_bytes() == want, name
    assert not (dest / BIG).exists()


# --- --sub aimed at the wrong server --------------------------------------------------------


def test_sub_at_a_broker_fails_in_seconds(run, stack):
    started = time.monotonic()
    result = run("roots", "--sub", stack.broker.replace("mqtt://", "http://"))
    took = time.monotonic() - started
    assert (result.code, result.out, result.err.count("\n")) == (2, "", 1), result
    assert "did not answer within 3 s: it is not a caterva subscriber" in result.err
    assert took < 6, took


def test_sub_at_a_publisher_says_so(run, stack):
    result = run("list", "demo", "--sub", stack.pub.url)
    assert (result.code, result.out) == (2, ""), result
    assert result.err == (
        f"error: {stack.pub.url} is a caterva publisher (of root demo), not a "
        "subscriber: point --sub at a subscriber (`caterva sub`)\n"
    )


def test_unreachable_advice_names_where_the_url_came_from(run, tmp_path, monkeypatch):
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    flag = run("roots", "--sub", url)
    assert flag.err == (
        f"error: cannot reach the subscriber at {url}: start one with "
        "`caterva sub`, or point --sub (env CATERVA_SUB) at a running one\n"
    )
    assert "point CATERVA_SUB (or --sub)" in run("roots", CATERVA_SUB=url).err
    config = tmp_path / "caterva.toml"
    config.write_text(f'sub = "{url}"\n')
    monkeypatch.delenv("CATERVA_SUB")
    from_file = run("roots", CATERVA_CONFIG=str(config))
    assert from_file.code == 4 and f"fix `sub` in {config} (or give --sub)" in from_file.err
