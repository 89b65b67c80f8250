"""``caterva demo``: the whole flow on one machine, narrated.

Starts a broker, a publisher of a directory and a subscriber (each a real ``caterva`` child
process on free loopback ports, exactly as you would start them by hand), then runs the
client commands a user would type, printing each command and what it did. Everything stops
when the demo ends, whether it succeeds, fails or is interrupted.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from caterva.child import Child
from caterva.errors import CatervaError, Unavailable

READY_TIMEOUT = 60.0


def run(directory: Path, root: str, workdir: Path | None, console: Console) -> None:
    directory = directory.resolve()
    if not directory.is_dir():
        raise CatervaError(
            f"{directory} is not a directory: run the demo from the repository, "
            "or pass the directory to publish"
        )
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="caterva-demo-")))
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()

        def service(*args: str) -> str:
            child = Child(list(args), workdir / f"{args[0]}.log")
            stack.callback(child.stop)  # stopped in reverse order: subscriber first
            shown = " ".join(shlex.quote(a) for a in args)
            console.print(f"[dim]$[/] caterva {shown}")
            url = child.wait_ready(READY_TIMEOUT)
            console.print(f"  [green]ready[/] at {url}")
            return url

        console.print(Rule("1. services: broker, publisher, subscriber"))
        broker = service("bro", "--port", "0", "--statedir", str(workdir / "broker"))
        service(
            "pub",
            root,
            str(directory),
            "--broker",
            broker,
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(workdir / "publisher"),
        )
        sub = service(
            "sub",
            "--broker",
            broker,
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(workdir / "subscriber"),
            "--cache-size",
            "1GiB",
        )
        _wait_announced(sub, root)

        env = {**os.environ, "CATERVA_SUB": sub}
        download = workdir / "downloads"
        download.mkdir(exist_ok=True)  # `caterva download` makes no missing directory
        target = _pick_dataset(directory)
        steps = [
            ("2. discover: which roots exist", ["roots"]),
            ("3. follow: one manifest request for the whole root", ["follow", root]),
            ("4. list: the root's datasets", ["list", root, "--tree"]),
            ("5. info: layout, compression and what is cached", ["info", f"{root}/{target}"]),
            (
                "6. show: a selection; only the chunks it touches travel",
                ["show", f"{root}/{target}[0:3, ::50]"],
            ),
            ("7. info again: those chunks are now cached", ["info", f"{root}/{target}"]),
            (
                "8. download: a Blosc2 file equal to the original",
                ["download", f"{root}/{target}", "-o", str(download / "copy.b2nd"), "--force"],
            ),  # a kept --workdir
        ]
        for title, args in steps:
            console.print(Rule(title))
            console.print(f"[dim]$[/] caterva {' '.join(shlex.quote(a) for a in args)}")
            sys.stdout.flush()
            done = subprocess.run([sys.executable, "-m", "caterva", *args], env=env, check=False)
            if done.returncode != 0:
                raise CatervaError(f"`caterva {args[0]}` failed (exit {done.returncode})")
        _verify(directory / target, download / "copy.b2nd", console)
        console.print(Rule("done"))
        console.print(
            f"the whole flow took {time.perf_counter() - started:.1f} s; stopping services"
        )


def _wait_announced(sub: str, root: str) -> None:
    """The subscriber learns of the root from the publisher's retained announcement."""
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        roots = httpx.get(f"{sub}/v1/roots", timeout=5).json()["roots"]
        if any(r["root"] == root and r["online"] for r in roots):
            return
        time.sleep(0.05)
    raise Unavailable(f"the subscriber never heard of root {root!r}")


def _pick_dataset(directory: Path) -> str:
    """The biggest multi-dimensional array: the one where fetching on demand shows."""
    import blosc2

    best, best_size = None, -1
    for path in sorted(directory.rglob("*.b2nd")):
        arr = blosc2.open(str(path), mode="r")
        if arr.ndim >= 2 and arr.schunk.nchunks > best_size:
            best, best_size = path, arr.schunk.nchunks
    if best is None:
        raise CatervaError(f"no 2-D or larger .b2nd array in {directory} to show")
    return best.relative_to(directory).as_posix()


def _verify(original: Path, copy: Path, console: Console) -> None:
    import blosc2
    import numpy as np

    a, b = blosc2.open(str(original), mode="r"), blosc2.open(str(copy), mode="r")
    if not np.array_equal(a[...], b[...]) or a.vlmeta.getall() != b.vlmeta.getall():
        raise CatervaError(f"the downloaded {copy.name} differs from the original")
    console.print(f"[green]verified:[/] {copy.name} has the same data and metadata as the original")
