"""Every client command of the ``caterva`` CLI against real services (one broker, publisher
and subscriber for the module): human and --json output, exit codes and one-line errors, the
progress bar on a terminal only, watch until Ctrl-C, a source going offline, and that the
catalog commands never import numpy or blosc2.

Most commands run in process through ``run_command()`` (the same edge that maps errors to
exit codes), which keeps the module fast; what depends on the process itself (imports, a
terminal, Ctrl-C, no traceback) runs ``python -m caterva`` as a child.
"""

from __future__ import annotations

import json
import os
import pty
import queue
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass
from fcntl import ioctl
from urllib.parse import urlsplit

import blosc2
import httpx
import numpy as np
import pytest

from caterva.cli.app import run_command
from caterva.client import Client
from caterva.client.lean import Pool
from caterva.protocol import printing, rest
from tests.conftest import ROOT, free_port
from tests.integration.test_client_stack import Stack, wait_event

HEAVY = ("numpy", "blosc2", "httpx")  # httpx: the Client speaks over client/lean.py


@dataclass
class Result:
    code: int
    out: str
    err: str  # without -X importtime lines
    modules: set[str]  # modules imported, and their top-level packages (with importtime=True)

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def run(stack, capsys, monkeypatch):
    """run(*args, **env) -> Result: ``caterva ARGS`` in process, through run_command()."""
    monkeypatch.setenv("CATERVA_CONFIG", "/nonexistent")
    monkeypatch.setenv("CATERVA_SUB", stack.url)

    def _run(*args: str, **env: str) -> Result:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "argv", ["caterva", *args])
        capsys.readouterr()
        try:
            run_command()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return Result(code, out, err, set())

    return _run


def env_for(stack: Stack | None, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CATERVA_", "TTY_", "FORCE_COLOR"))
    }
    env.update(CATERVA_CONFIG="/nonexistent", COLUMNS="200", NO_COLOR="1")
    if stack is not None:
        env["CATERVA_SUB"] = stack.url
    env.update(extra)
    return env


def command(*args: str, importtime: bool = False) -> list[str]:
    return [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "caterva", *args]


def finish(proc: subprocess.Popen, timeout: float = 60) -> Result:
    out, err = proc.communicate(timeout=timeout)
    lines = err.splitlines()
    names = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    modules = names | {name.split(".")[0] for name in names}
    err = "".join(line + "\n" for line in lines if not line.startswith("import time:"))
    return Result(proc.returncode, out, err, modules)


def start(stack, *args: str, importtime: bool = False, cwd=None, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        command(*args, importtime=importtime),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_for(stack, **env),
        cwd=cwd or ROOT,
    )


def cli(stack, *args: str, importtime: bool = False, cwd=None, **env: str) -> Result:
    return finish(start(stack, *args, importtime=importtime, cwd=cwd, **env))


def ok(result: Result) -> Result:
    assert result.code == 0, result.err
    assert result.err == "", result.err  # nothing on stderr when piped: no bar, no noise
    return result


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("cli-stack"))
    try:
        stack.follow()
        yield stack
    finally:
        stack.close()


# --- catalog commands -----------------------------------------------------------------------


def test_roots(run, stack):
    human, machine = ok(run("roots")), ok(run("roots", "--json"))
    header, row = human.out.splitlines()[:2]
    assert header.split() == ["root", "online", "learned", "followed", "datasets", "source"]
    assert row.split() == [
        "demo",
        "yes",
        *row.split()[2:4],  # learned (checked below) a moment ago
        "ago",
        "yes",
        str(len(stack.originals)),
        stack.pub.url,
    ]
    (root,) = machine.json()["roots"]
    (source,) = root["sources"]
    # by the publisher's birth, or by a read (the stack's reads ran before)
    assert row.split()[2] == source["learned"] in ("broker", "probe")
    assert time.time() - 600 < source["since"] <= time.time()
    assert (root["root"], root["online"], root["followed"], root["source"]) == (
        "demo",
        True,
        True,
        stack.pub.url,
    )


def test_unfollow_and_follow(run, stack):
    n = len(stack.originals)
    gone = ok(run("unfollow", "demo"))
    assert gone.out.strip() == "stopped following demo; its cached chunks are dropped"
    assert not ok(run("roots", "--json")).json()["roots"][0]["followed"]
    again = ok(run("unfollow", "demo"))  # idempotent
    assert again.out == "demo was not followed: nothing to do\n"
    assert ok(run("unfollow", "demo", "--json")).json() == {
        "root": "demo",
        "followed": False,
        "was_followed": False,
    }
    for args in (("list", "demo"), ("info", "demo/grid.b2nd"), ("show", "demo/line.b2nd[0]")):
        refused = run(*args)  # a documented code of its own, and the way out
        assert (refused.code, refused.out) == (6, ""), (args, refused)
        assert refused.err == "error: root 'demo' is not followed: run `caterva follow demo`\n"
    followed = ok(run("follow", "demo", "--json"))
    assert followed.json() == {"root": "demo", "followed": True, "datasets": n}
    assert ok(run("unfollow", "demo", "--json")).json() == {
        "root": "demo",
        "followed": False,
        "was_followed": True,
    }
    assert ok(run("follow", "demo")).out.strip() == f"following demo ({n} datasets)"


def test_list(run, stack):
    rows = [line.split() for line in ok(run("list", "demo")).out.splitlines()]
    assert rows[0] == ["path", "kind", "shape", "dtype", "size"]
    assert [r[0] for r in rows[1:]] == sorted(stack.originals)
    by_path = {r[0]: r for r in rows[1:]}
    assert by_path["grid.b2nd"][1:6] == ["b2nd", "(12,", "17,", "9)", "float32"]
    assert by_path["records.b2nd"][3:6] == ["record", "(4", "fields)"]
    assert by_path["docs/notes.txt"][1:4] == ["file", "-", "-"]
    tree = ok(run("list", "demo", "--tree")).out
    assert tree.splitlines()[0] == "demo"
    assert "docs/" in tree and "└── notes.txt" in tree and "tide/" in tree
    machine = ok(run("list", "demo", "--json")).json()
    assert [d["path"] for d in machine["datasets"]] == sorted(stack.originals)
    grid = next(d for d in machine["datasets"] if d["path"] == "grid.b2nd")
    assert (grid["shape"], grid["chunks"], grid["kind"]) == ([12, 17, 9], [5, 6, 4], "b2nd")
    assert "digests" not in grid


def test_info(run):
    human = ok(run("info", "demo/grid.b2nd"))
    fields = dict(line.rstrip().split(None, 1) for line in human.out.splitlines())
    assert fields["dataset"] == "demo/grid.b2nd"
    assert fields["shape"] == "(12, 17, 9)" and fields["dtype"] == "float32"
    assert fields["chunks"] == "(5, 6, 4), 27 in all" and fields["blocks"] == "(2, 3, 2)"
    assert fields["codec"].startswith(("ZSTD", "LZ4", "BLOSCLZ"))
    assert "ratio" in fields["size"] and "of 27 chunks" in fields["cached"]
    assert fields["vlmeta"] == 'units: "m"'
    machine = ok(run("info", "demo/records.b2nd", "--json")).json()
    assert machine["address"] == "demo/records.b2nd" and machine["shape"] == [40]
    assert machine["dtype"]["names"] == ["id", "t", "pos", "tag"]
    assert set(machine["cached"]) == {"chunks", "bytes"} and len(machine["digests"]) == 4


def test_info_counts_what_is_cached(run):
    run("show", "demo/line.b2nd[0:3]")  # touches chunk 0 of 7
    cached = ok(run("info", "demo/line.b2nd", "--json")).json()["cached"]
    assert cached["chunks"] >= 1 and cached["bytes"] > 0


# --- show -----------------------------------------------------------------------------------


def test_show_arrays(run, stack):
    title, body = ok(run("show", "demo/line.b2nd[3:7]")).out.splitlines()
    assert title == "demo/line.b2nd[3:7]  int64  shape (4,)" and body == "[ 9 16 25 36]"
    grid = stack.originals["grid.b2nd"]
    machine = ok(run("show", "demo/grid.b2nd[1:9:3, ::-5, -1]", "--json")).json()
    assert machine["selection"] == "1:9:3,::-5,-1" and machine["shape"] == [3, 4]
    assert machine["dtype"] == "<f4"
    np.testing.assert_array_equal(np.array(machine["data"], np.float32), grid[1:9:3, ::-5, -1])
    assert ok(run("show", "demo/scalar.b2nd")).out.splitlines()[1] == "6.25"
    assert ok(run("show", "demo/scalar.b2nd[...]", "--json")).json()["data"] == 6.25


def test_show_structured(run, stack):
    records = stack.originals["records.b2nd"]
    field = ok(run("show", "demo/records.b2nd[0:3]", "--field", "id"))
    assert field.out.splitlines() == [
        "demo/records.b2nd[0:3] field id  int32  shape (3,)",
        "[-50 -47 -44]",
    ]
    whole = ok(run("show", "demo/records.b2nd[0:2]")).out.splitlines()
    assert whole[0].startswith("demo/records.b2nd[0:2]  {id: int32, t: float64, pos: (2,)float32")
    assert whole[1].startswith("[(-50,") and "b'a00'" in whole[1]
    machine = ok(run("show", "demo/records.b2nd[-2:]", "--json")).json()
    first = machine["data"][0]
    assert first["id"] == int(records["id"][-2]) and first["pos"] == records["pos"][-2].tolist()
    assert first["tag"] == {"__bytes__": "YTM4"}  # b"a38", base64
    pos = ok(run("show", "demo/records.b2nd[5]", "--field", "pos", "--json")).json()
    assert pos["data"] == records["pos"][5].tolist() and pos["shape"] == [2]


def test_show_plain_files(run, stack):
    total = len(stack.originals["docs/notes.txt"])
    lines = ok(run("show", "demo/docs/notes.txt")).out.splitlines()
    assert lines[0] == f"demo/docs/notes.txt[0:4096]  file, 4,096 of {total:,} bytes"
    assert lines[1] == "caterva notes: ünïcode and lines"
    assert lines[-1] == f"... {total - 4096:,} more bytes"
    dump = ok(run("show", "demo/blob.bin[16:40]")).out.splitlines()[1:]
    blob = stack.originals["blob.bin"]
    assert dump[0].startswith("00000010  " + " ".join(f"{b:02x}" for b in blob[16:32]))
    assert dump[1].startswith("00000020  " + " ".join(f"{b:02x}" for b in blob[32:40]))
    assert len(dump) == 2
    machine = ok(run("show", "demo/docs/notes.txt[0:7]", "--json")).json()
    assert machine["text"] == "caterva" and machine["total"] == total
    frame = ok(run("show", "demo/wave.b2frame[0:4]", "--json")).json()
    assert frame["base64"] and frame["kind"] == "b2frame"


# --- download -------------------------------------------------------------------------------


def test_download_dataset_and_plain_file(run, stack, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    human = ok(run("download", "demo/grid.b2nd"))
    assert human.out.startswith("saved demo/grid.b2nd to grid.b2nd (")
    got = blosc2.open(str(tmp_path / "grid.b2nd"))
    np.testing.assert_array_equal(got[...], stack.originals["grid.b2nd"])
    machine = ok(run("download", "demo/blob.bin", "-o", str(tmp_path / "b"), "--json")).json()
    assert machine == {"address": "demo/blob.bin", "dest": str(tmp_path / "b"), "bytes": 3000}
    assert (tmp_path / "b").read_bytes() == stack.originals["blob.bin"]


def test_download_root(run, stack, tmp_path, monkeypatch):
    machine = ok(run("download", "demo", "-o", str(tmp_path / "all"), "--json")).json()
    assert sorted(f["path"] for f in machine["files"]) == sorted(stack.originals)
    out = tmp_path / "all"
    assert (out / "docs/notes.txt").read_bytes() == stack.originals["docs/notes.txt"]
    assert blosc2.open(str(out / "wave.b2frame"))[:] == stack.originals["wave.b2frame"]
    records = blosc2.open(str(out / "records.b2nd"))
    np.testing.assert_array_equal(records[...], stack.originals["records.b2nd"])
    monkeypatch.chdir(tmp_path)
    human = ok(run("download", "demo"))
    assert human.out.strip().startswith(f"saved {len(stack.originals)} datasets of demo to demo/")
    assert (tmp_path / "demo/blob.bin").read_bytes() == stack.originals["blob.bin"]


def test_download_root_lists_the_root_once(run, stack, tmp_path, monkeypatch):
    """The report comes from the download's own listing: one manifest request, not two."""
    paths = []
    request = Pool.request

    def counted(self, method, url, *args):
        paths.append(urlsplit(url).path)
        return request(self, method, url, *args)

    monkeypatch.setattr(Pool, "request", counted)
    machine = ok(run("download", "demo", "-o", str(tmp_path / "all"), "--json")).json()
    assert len(machine["files"]) == len(stack.originals)
    assert paths.count("/v1/roots/demo/manifest") == 1, paths


# --- errors ---------------------------------------------------------------------------------

ERRORS = [
    (("info", "nosuchroot/x.b2nd"), {}, 3, "unknown root 'nosuchroot'"),
    (("info", "demo/nope.b2nd"), {}, 3, "no dataset 'nope.b2nd' in root 'demo'"),
    (("list", "nosuchroot"), {}, 3, "unknown root"),
    (("follow", "nosuchroot", "--json"), {}, 3, "root 'nosuchroot'"),
    (("show", "demo/grid.b2nd[0:2, 1.5]"), {}, 2, "cannot parse selection item '1.5'"),
    (("show", "demo/line.b2nd[100]"), {}, 2, "index 100 is out of bounds"),
    (("show", "demo/line.b2nd[0:4"), {}, 2, "unclosed '[' in demo/line.b2nd[0:4"),
    (("show", "demo/line.b2nd[[1,2]]"), {}, 2, "list indexing is not supported"),
    (("show", "demo/line.b2nd[]"), {}, 2, "empty selection in demo/line.b2nd[]"),
    (("show", "demo/line.b2nd[0, 0]"), {}, 2, "too many indices"),
    (("show", "demo/records.b2nd[0:2]", "--field", "nope"), {}, 2, "has no field 'nope'"),
    (("show", "demo/line.b2nd[0]", "--field", "x"), {}, 2, "has no field 'x'"),
    (("show", "demo"), {}, 2, "names a root, not a dataset"),
    (("download", "demo/nope.b2nd", "--json"), {}, 3, "no dataset"),
    (("roots", "--sub", "http://127.0.0.1:{port}"), {}, 4, "start one with `caterva sub`"),
    (("info", "demo/grid.b2nd"), {"CATERVA_SUB": "http://127.0.0.1:{port}"}, 4, "caterva sub"),
    (("watch", "demo", "--sub", "http://127.0.0.1:{port}"), {}, 4, "cannot reach the subscriber"),
    (("roots", "--sub", "ftp://nowhere"), {}, 2, "invalid subscriber URL"),
]


@pytest.mark.parametrize("args, env, code, message", ERRORS, ids=[" ".join(e[0]) for e in ERRORS])
def test_errors_are_one_line_and_an_exit_code(run, args, env, code, message):
    port = str(free_port())  # nothing listens there
    result = run(
        *(a.replace("{port}", port) for a in args),
        **{k: v.replace("{port}", port) for k, v in env.items()},
    )
    assert (result.code, result.out) == (code, ""), result
    assert result.err.count("\n") == 1 and result.err.startswith("error: "), result.err
    assert message in result.err, result.err


def test_help_and_usage_errors(run):
    for name in ("roots", "follow", "unfollow", "list", "info", "show", "download", "watch"):
        result = run(name, "--help")
        assert result.code == 0 and "--json" in result.out and "--sub" in result.out, name
    missing = run("show")
    assert missing.code == 2 and "Missing argument" in missing.err


# --- what needs a real process --------------------------------------------------------------


def test_catalog_commands_import_neither_numpy_nor_blosc2(stack):
    runs = [
        ("roots",),
        ("list", "demo", "--json"),
        ("info", "demo/grid.b2nd"),
        ("follow", "demo"),
        ("info", "demo/nope.b2nd"),
    ]
    procs = [start(stack, *args, importtime=True) for args in runs]
    for args, proc in zip(runs, procs, strict=True):
        result = finish(proc)
        assert result.code == (3 if "demo/nope.b2nd" in args else 0), (args, result.err)
        assert "httptools" in result.modules  # the check sees real imports
        assert not result.modules & set(HEAVY), (args, result.modules & set(HEAVY))
    # an array's values are printed by the subscriber: `show` needs numpy only for --json
    show = finish(start(stack, "show", "demo/grid.b2nd[0:2]", importtime=True))
    assert show.code == 0 and "httptools" in show.modules, show.err
    assert not show.modules & set(HEAVY), show.modules & set(HEAVY)
    assert "rich.console" not in show.modules  # piped: text as it is, no styles to render
    machine = finish(start(stack, "show", "demo/line.b2nd[0]", "--json", importtime=True))
    assert "numpy" in machine.modules  # and it would see them


def test_errors_never_show_a_traceback(stack):
    procs = [
        start(stack, "roots", "--sub", f"http://127.0.0.1:{free_port()}"),
        start(stack, "show", "demo/nope.b2nd[0]"),
    ]
    for proc, code in zip(procs, (4, 3), strict=True):
        result = finish(proc)
        assert result.code == code and result.out == ""
        assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err


def run_on_a_terminal(stack, *args: str, cwd) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return (code, everything)."""
    master, slave = pty.openpty()
    ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = env_for(stack, TERM="xterm-256color")
    env.pop("NO_COLOR")
    proc = subprocess.Popen(
        command(*args), stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_only(run, stack, tmp_path):
    ok(run("unfollow", "demo"))  # cold: the chunks come one by one, and the rate shows
    ok(run("follow", "demo"))
    code, screen = run_on_a_terminal(stack, "download", "demo/grid.b2nd", cwd=tmp_path)
    assert code == 0, screen
    assert "━" in screen and "B/s" in screen  # the bar, and the transfer rate column
    assert "saved demo/grid.b2nd" in screen and (tmp_path / "grid.b2nd").stat().st_size > 0
    # warm: the subscriber writes the file (the handoff), the bar is there all the same
    code, screen = run_on_a_terminal(
        stack, "download", "demo/grid.b2nd", "-o", "w.b2nd", cwd=tmp_path
    )
    assert code == 0, screen
    assert "━" in screen and "saved demo/grid.b2nd" in screen
    assert (tmp_path / "w.b2nd").read_bytes() == (tmp_path / "grid.b2nd").read_bytes()
    piped = ok(run("download", "demo/grid.b2nd", "-o", str(tmp_path / "p.b2nd")))
    assert "━" not in piped.out + piped.err


def lines_of(stream) -> queue.Queue:
    """Read a child's stream in a thread, line by line, into a queue (None at the end)."""
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def watcher(stack, *args: str):
    proc = subprocess.Popen(
        command("watch", "demo", *args, importtime=True),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_for(stack),
        cwd=ROOT,
        # a child inherits an ignored SIGINT from a non-interactive shell: give it Ctrl-C back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    out, err = lines_of(proc.stdout), lines_of(proc.stderr)
    imported = set()
    while True:  # the "watching" line says the stream is open: changes from now on are seen
        line = err.get(timeout=30)
        assert line is not None, f"watch ended early (exit {proc.wait()})"
        if line.startswith("import time:"):
            imported.add(line.split("|")[-1].strip().split(".")[0])
        elif line.startswith("watching demo"):
            return proc, out, err, imported
        else:
            raise AssertionError(f"unexpected stderr line {line!r}")


def test_watch_prints_events_until_ctrl_c(stack):
    human, human_out, human_err, imported = watcher(stack)
    machine, machine_out, machine_err, _ = watcher(stack, "--json")
    assert "httptools" in imported and not imported & set(HEAVY), "watch imported " + str(
        imported & set(HEAVY)
    )
    levels = blosc2.open(str(stack.data / "tide/levels.b2nd"), mode="a")
    levels[0] = 123.0  # chunk 0
    del levels
    event = json.loads(machine_out.get(timeout=30))
    assert (event["root"], event["event"], event["path"], event["chunks"]) == (
        "demo",
        "update",
        "tide/levels.b2nd",
        [0],
    )
    line = human_out.get(timeout=30)
    assert line.split()[1:6] == ["demo", "update", "tide/levels.b2nd", "chunks", "0"]
    for proc, err in ((human, human_err), (machine, machine_err)):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0  # Ctrl-C is how watching ends: not an error
        rest = list(iter(lambda q=err: q.get(timeout=10), None))
        assert rest == [], rest  # no traceback, no noise


# --- arrays printed by the subscriber, or by the CLI when it declines ----------------------


def printed_before(value, width: int = 200) -> str:
    """numpy's text of ``value`` as `caterva show` printed it before the subscriber did."""
    with np.printoptions(linewidth=max(width, 40), threshold=1000, edgeitems=4):
        return np.array2string(np.asarray(value))


def test_show_prints_what_the_subscriber_declines_to_print(run, stack):
    """8**6 values to print is more than a subscriber prints (501 not_supported): the CLI
    reads the values and prints them itself, the same text."""
    six = np.random.default_rng(6).integers(0, 100, size=(9,) * 6, dtype=np.uint8)
    with Client(stack.url) as client, client.watch("demo") as events:
        blosc2.asarray(six, urlpath=str(stack.data / "six.b2nd"), mode="w", chunks=(5,) * 6)
        wait_event(events, event="create", path="six.b2nd")
    r = httpx.get(f"{stack.url}/v1/roots/demo/printed/six.b2nd", params={"width": 80})
    assert (r.status_code, r.json()["error"]["code"]) == (501, "not_supported")
    shown = ok(run("show", "demo/six.b2nd[...]")).out
    title = "demo/six.b2nd[...]  uint8  shape (9, 9, 9, 9, 9, 9)"
    body = "".join(line.rstrip(" ") + "\n" for line in printed_before(six).split("\n"))
    assert shown == f"{title}\n{body}"
    # one axis fewer: printed by the subscriber, read from the corners alone
    assert ok(run("show", "demo/six.b2nd[0]")).out.split("\n", 1)[1] == "".join(
        line.rstrip(" ") + "\n" for line in printed_before(six[0]).split("\n")
    )


@pytest.mark.parametrize(
    "params, where",
    [
        ({}, "width"),
        ({"width": 0}, "width"),
        ({"width": printing.MAX_WIDTH + 1}, "width"),
        ({"width": "wide"}, "width"),
        ({"width": 80, "sel": "0," * rest.SEL_MAX}, "sel"),
        ({"width": 80, "field": "f" * (rest.FIELD_MAX + 1)}, "field"),
    ],
)
def test_printed_parameters_are_bounded(stack, params, where):
    r = httpx.get(f"{stack.url}/v1/roots/demo/printed/grid.b2nd", params=params)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_request"), r.text
    assert r.json()["error"]["message"].startswith(f"invalid {where}: ")


def test_printed_selections_are_checked_as_reads_are(stack):
    url = f"{stack.url}/v1/roots/demo/printed"
    for path, params, status, code in [
        ("grid.b2nd", {"sel": "0:2, 1.5"}, 400, "bad_selection"),
        ("line.b2nd", {"sel": "100"}, 400, "bad_selection"),
        ("records.b2nd", {"field": "nope"}, 400, "bad_selection"),
        ("nope.b2nd", {}, 404, "unknown_dataset"),
    ]:
        r = httpx.get(f"{url}/{path}", params={"width": 80, **params})
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    r = httpx.get(f"{url}/records.b2nd", params={"width": 80, "sel": "5, 1", "field": "pos"})
    value = stack.originals["records.b2nd"]["pos"][5, 1]  # a sub-array field's axis too
    assert r.json() == {"dtype": "<f4", "shape": [], "text": printed_before(value, 80)}


# --- a source going offline (last: it stops the publisher, then brings it back) -------------


def test_reading_an_uncached_chunk_with_the_source_offline(run, stack, tmp_path, monkeypatch):
    with Client(stack.url) as client, client.watch("demo") as events:
        blosc2.asarray(
            np.arange(30.0), urlpath=str(stack.data / "late.b2nd"), mode="w", chunks=(10,)
        )
        wait_event(events, event="create", path="late.b2nd")
        stack.pub.stop()
        wait_event(events, event="source", online=False)
        result = run("show", "demo/late.b2nd[0:3]")
        assert (result.code, result.out, result.err.count("\n")) == (4, "", 1), result
        assert result.err.startswith("error: ") and "offline" in result.err
        monkeypatch.chdir(tmp_path)
        machine = run("download", "demo/late.b2nd", "--json")
        assert (machine.code, machine.out) == (4, "") and list(tmp_path.iterdir()) == []
        stack.start_publisher()
        wait_event(events, event="source", online=True)
    assert ok(run("show", "demo/late.b2nd[2]", "--json")).json()["data"] == 2.0


def test_watch_ends_with_an_error_when_the_subscriber_stops(stack):
    """(Last of all: it stops the subscriber.)"""
    proc, out, err, _ = watcher(stack)
    assert stack.sub.stop() == 0
    assert proc.wait(timeout=30) == 4
    assert err.get(timeout=10) == f"error: the subscriber at {stack.url} closed the event stream\n"
    assert err.get(timeout=10) is None and out.get(timeout=10) is None
