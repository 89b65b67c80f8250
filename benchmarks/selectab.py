"""``python -m benchmarks.selectab``: the warm Python-API selection (8 chunks of the compressible
cube, as ``select_client_warm``) read by two clients each through its own subscriber, one
read each in turn: an A/B of the client's and the subscriber's code on one machine at one
moment (the load moves too much between runs here for before/after runs to compare).

    --old DIR    a checkout of the other code (``git archive REV | tar -x -C DIR``): its
                 subscriber and its client run from there; the others from this tree. Without
                 it, this tree against itself.
    --rounds N   reads per side (the order flips every round)
    --gap S      each client sits idle S seconds before each read, as beside Caterva2's reads
                 in ``benchmarks.run --peer caterva2`` (0: back to back)
    --peer caterva2   also Caterva2's Python API reading the same selection each round (as
                 ``benchmarks.run --peer caterva2`` runs it), and each side's lead over it

Prints each side's median and quartiles, the median of the rounds' ratios (old / new) with a
bootstrap 95 % interval, and the CPU milliseconds per read of each client and subscriber.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import data, harness
from benchmarks.coldab import cpu_seconds, subscriber
from caterva import Client

# A client in a process of its own, caterva imported from its PYTHONPATH: checks its first
# read against the original, then for each line it reads, after sleeping the gap, and prints
# the read's wall seconds and its own CPU seconds.
WORKER = """
import json, os, sys, time
import blosc2, numpy as np
from caterva import Client
url, original, side, gap = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
key = (slice(side // 4, side // 2),) * 3
ds = Client(url).dataset("big/smooth.b2nd")
print(json.dumps(bool(np.array_equal(ds[key], blosc2.open(original, mode="r")[key]))), flush=True)
for _ in sys.stdin:
    time.sleep(gap)
    cpu, start = sum(os.times()[:2]), time.perf_counter()
    ds[key]
    print(json.dumps([time.perf_counter() - start, sum(os.times()[:2]) - cpu]), flush=True)
"""


def worker(tree: Path, url: str, layout: data.Layout, gap: float) -> subprocess.Popen:
    original = str(layout.big / "smooth.b2nd")
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, url, original, str(layout.side), str(gap)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree), "CATERVA_CONFIG": "/nonexistent"},
    )
    if not json.loads(process.stdout.readline()):
        raise SystemExit(f"the client of {tree} read other values than the original's")
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.05)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--peer", choices=["caterva2"])
    harness.add_workdir(parser)
    args = parser.parse_args()
    layout = data.make(args.workdir, data.side_for(args.scale), 1000)  # as run and coldab: shared
    trees = {"old": (args.old or harness.REPO).resolve(), "new": harness.REPO}
    rundir = Path(tempfile.mkdtemp(prefix="selectab-"))
    workers: dict[str, subprocess.Popen] = {}
    peer, theirs = None, []
    try:
        with harness.Services(rundir) as services:
            broker = services.broker()
            services.publisher("big", layout.big, broker)
            subs = {k: subscriber(services, k, broker, tree) for k, tree in trees.items()}
            for sub in subs.values():
                client = Client(sub.url)
                harness.wait_online(client, ["big"])
                client.follow("big")
                client.close()
            workers = {k: worker(trees[k], subs[k].url, layout, args.gap) for k in trees}
            if args.peer:
                from benchmarks import peer_caterva2

                peer = peer_caterva2.start(
                    args.workdir, rundir / "caterva2", {"big": layout.big}, print
                )
                key = [[k.start, k.stop] for k in layout.key]
                peer.follow("big")
                peer.call("select", path="big/smooth.b2nd", key=key)  # warms its cache
            walls: dict[str, list[float]] = {"old": [], "new": []}
            cpu = {k: [0.0, 0.0] for k in trees}  # client, subscriber
            for r in range(args.rounds):
                for k in ("old", "new") if r % 2 == 0 else ("new", "old"):
                    before = cpu_seconds(subs[k].proc.pid)
                    workers[k].stdin.write("\n")
                    workers[k].stdin.flush()
                    wall, client_cpu = json.loads(workers[k].stdout.readline())
                    walls[k].append(wall)
                    cpu[k][0] += client_cpu
                    cpu[k][1] += cpu_seconds(subs[k].proc.pid) - before
                if peer is not None:
                    theirs.append(peer.call("select", path="big/smooth.b2nd", key=key)["s"])
    finally:
        if peer is not None:
            peer.close()
        for process in workers.values():
            process.stdin.close()
            process.wait()
        shutil.rmtree(rundir, ignore_errors=True)
    for k in ("old", "new"):
        q1, median, q3 = statistics.quantiles(walls[k], n=4)
        client_ms, sub_ms = (1e3 * s / args.rounds for s in cpu[k])
        print(
            f"{k} ({trees[k]}): median {median * 1e3:.2f} ms ({q1 * 1e3:.2f}-{q3 * 1e3:.2f}); "
            f"CPU per read: client {client_ms:.2f} ms, subscriber {sub_ms:.2f} ms"
        )
    if theirs:
        print(f"Caterva2: median {statistics.median(theirs) * 1e3:.2f} ms")
        for k in ("old", "new"):
            pairs = statistics.median(t / w for t, w in zip(theirs, walls[k]))
            lead = statistics.median(theirs) / statistics.median(walls[k])
            print(f"{k}: lead over Caterva2 {lead:.2f}x (median of the rounds' {pairs:.2f}x)")
    ratios = [a / b for a, b in zip(walls["old"], walls["new"])]
    rng = random.Random(0)
    boot = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(1000))
    print(
        f"old / new: median of the rounds' ratios {statistics.median(ratios):.3f} "
        f"(95 % {boot[25]:.3f}-{boot[974]:.3f}), of the medians "
        f"{statistics.median(walls['old']) / statistics.median(walls['new']):.3f}"
    )


if __name__ == "__main__":
    main()
