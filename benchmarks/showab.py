"""``python -m benchmarks.showab``: `caterva show` of the benchmark's 8-chunk selection (the
``select_cli`` command), warm and cold, a warm `caterva download` of the compressible cube,
and `caterva roots` (start-up and one request), by
this tree's CLI and subscriber and by another checkout's, alternating: an A/B of the CLI on
one machine at one moment (the load moves too much between runs here for before/after runs
to compare).

    --old DIR    a checkout of the other code (``git archive REV | tar -x -C DIR``): its CLI
                 and its subscriber run from there; the others from this tree. Without it,
                 this tree alone.
    --repeat N   samples of each command per side (the order flips every round)
    --scale S    cube size, 1 = 1 GiB (the benchmark's data, made once in --workdir)

Each side's CLI talks to its own subscriber, both of one publisher. Warm samples follow an
untimed run; before each cold one the subscriber re-follows the root (its cache dropped).
Prints every sample, then the medians, and whether both sides printed the same selection.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import data, harness
from benchmarks.coldab import refollow, subscriber
from caterva import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--scale", type=float, default=1)
    harness.add_workdir(parser)
    args = parser.parse_args()
    layout = data.make(args.workdir, data.side_for(args.scale), 0)
    trees = {"old": args.old.resolve()} if args.old else {}
    trees["new"] = harness.REPO
    for tree in trees.values():  # as an install has it: no module compiled at each start
        compileall.compile_dir(tree / "caterva", quiet=1)
    env = {**os.environ, "CATERVA_CONFIG": "/nonexistent"}
    env.pop("COLUMNS", None)  # piped: 200 columns, on both sides
    show = ["show", f"big/smooth.b2nd[{layout.selection}]"]
    rundir = Path(tempfile.mkdtemp(prefix="showab-"))
    saved = rundir / "smooth.b2nd"
    download = ["download", "big/smooth.b2nd", "-o", str(saved)]
    cases = {
        "show, warm": (show, False),
        "show, cold": (show, True),
        "download, warm": (download, False),
        "roots": (["roots"], False),
    }
    try:
        with harness.Services(rundir) as services:
            broker = services.broker()
            services.publisher("big", layout.big, broker)
            subs = {k: subscriber(services, k, broker, tree) for k, tree in trees.items()}
            clients = {k: Client(s.url) for k, s in subs.items()}
            for client in clients.values():
                harness.wait_online(client, ["big"])
                client.follow("big")

            def run(k: str, command: list[str]) -> tuple[float, bytes]:
                # python -m caterva imports caterva from its working directory: that side's
                argv = [sys.executable, "-m", "caterva", *command, "--sub", subs[k].url]
                saved.unlink(missing_ok=True)
                os.sync()  # untimed: the writeback of the last sample's file
                start = time.perf_counter()
                done = subprocess.run(argv, cwd=trees[k], env=env, capture_output=True, check=True)
                return time.perf_counter() - start, done.stdout

            samples: dict[tuple[str, str], list[float]] = {}
            printed: dict[str, set[bytes]] = {}
            for case, (command, cold) in cases.items():
                for k in trees:
                    run(k, command)  # untimed: the subscriber's imports, the page cache
                for r in range(args.repeat):
                    for k in list(trees)[::-1] if r % 2 else list(trees):
                        if cold:
                            refollow(clients[k])
                        took, out = run(k, command)
                        samples.setdefault((case, k), []).append(took)
                        if command is show:
                            printed.setdefault(case, set()).add(out)
                        print(f"{r} {case} {k}: {took * 1000:.1f} ms", flush=True)
            for client in clients.values():
                client.close()
            for (case, k), got in samples.items():
                print(
                    f"{case:14} {k}: median {statistics.median(got) * 1000:.1f} ms "
                    f"({min(got) * 1000:.1f}-{max(got) * 1000:.1f})"
                )
            for case, outs in printed.items():
                print(f"{case}: every sample printed the same: {len(outs) == 1}")
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


if __name__ == "__main__":
    main()
