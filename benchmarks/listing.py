"""``python -m benchmarks.listing``: how long ``caterva list`` takes on a followed root of
many tiny datasets (issue 16, "Listing at scale"), its figures printed and written as JSON.

    --datasets N   tiny .b2nd files (benchmarks.bigroot.make_root), 1,000 a directory (10000)
    --repeat R     runs of each command; the median is reported (3)

A broker, a publisher of the root and a subscriber that follows it run on loopback; each
command is the CLI as a user runs it (a new process), its output read to the end and dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import harness
from benchmarks.bigroot import ROOT, cpu_seconds, make_root
from caterva.client import Client

COMMANDS = (("list", ROOT, "--json"), ("list", ROOT))


def timed(url: str, args: tuple[str, ...], sub_pid: int) -> tuple[float, float, float]:
    """(wall, CPU of the CLI process, CPU of the subscriber) of one command, in seconds: on
    a loaded machine the CPU figures move less than the wall time."""
    env = {**os.environ, "CATERVA_SUB": url, "CATERVA_CONFIG": "/nonexistent"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sub_before = cpu_seconds(sub_pid)
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "caterva", *args], env=env, stdout=subprocess.DEVNULL, check=True
    )
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cli, cpu_seconds(sub_pid) - sub_before


def measure(root: Path, rundir: Path, repeat: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with harness.Services(rundir) as services:
        broker = services.broker()
        services.publisher(ROOT, root, broker)
        sub = services.subscriber("sub", broker)
        with Client(sub.url) as client:
            harness.wait_online(client, [ROOT])
            client.follow(ROOT)
        for args in COMMANDS:
            walls, clis, subs = zip(*(timed(sub.url, args, sub.pid) for _ in range(repeat)))
            name = f"caterva {' '.join(args)}"
            out[f"{name}: wall, median (s)"] = statistics.median(walls)
            out[f"{name}: wall, least (s)"] = min(walls)
            out[f"{name}: CPU of the CLI (s)"] = statistics.median(clis)
            out[f"{name}: CPU of the subscriber (s)"] = statistics.median(subs)
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.listing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--datasets", type=int, default=10_000, help="tiny datasets (10000)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each command (3)")
    harness.add_workdir(p)
    args = p.parse_args(argv)
    if args.datasets < 1 or args.repeat < 1:
        p.error("--datasets and --repeat must be at least 1")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    root = make_root(workdir, args.datasets)
    rundir = Path(tempfile.mkdtemp(prefix="listing-", dir=workdir))
    results = measure(root, rundir, args.repeat)
    print(f"caterva list of {args.datasets:,} datasets, median of {args.repeat}")
    for name, value in results.items():
        print(f"  {name:55} {value:8.3f}")
    (workdir / f"listing-{args.datasets}.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
