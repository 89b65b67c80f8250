"""``python -m benchmarks.coldab``: cold downloads through two subscribers, alternating: an
A/B of the subscriber's code on one machine at one moment (the load moves too much between
runs here for before/after runs to compare). With ``--disk``, warm ones instead, the cache
read from disk.

    --old DIR    a checkout of the other code (``git archive REV | tar -x -C DIR``): its
                 subscriber runs from there; the other from this tree. Without it, one.
    --repeat N   cold downloads of each cube per subscriber (the order flips every round)
    --disk       warm downloads whose cached chunks are not in the page cache (dropped before
                 each: root only), as a subscriber's cache larger than its memory is read
    --pyspy F    record this tree's subscriber with py-spy (raw stacks, idle included) into
                 F-<cube>-<round>.txt

Prints each download's wall time and the CPU seconds the subscriber, the publisher and this
client process spent on it, then medians, and each subscriber's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import data, harness
from caterva import Client
from caterva.child import Child


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(line.split(":")[1].strip() for line in status if line.startswith("VmHWM"))


def subscriber(services: harness.Services, name: str, broker: str, cwd: Path) -> Child:
    args = ["sub", "--broker", broker, "--http", "127.0.0.1:0", "--cache-size", "20GiB"]
    statedir = ["--statedir", str(services.rundir / name)]
    child = Child(
        [*args, *statedir],
        services.rundir / f"{name}.log",
        cwd=cwd,  # python -m caterva imports caterva from its working directory
        env={"CATERVA_CONFIG": "/nonexistent"},
    )
    services.started.append(child)
    child.wait_ready()
    return child


def refollow(client: Client) -> None:
    """A cold cache: unfollowing drops every cached chunk of the root."""
    if any(root.name == "big" and root.followed for root in client.roots()):
        client.unfollow("big")
    client.follow("big")


def drop_page_cache() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError as exc:
        raise SystemExit(f"--disk drops the page cache, which needs root: {exc}") from None


def download(client: Client, name: str, dest: Path, spy: Path | None, pid: int) -> float:
    dest.unlink(missing_ok=True)
    os.sync()
    recorder = None
    if spy is not None:
        command = ["py-spy", "record", "-r", "200", "-f", "raw", "--idle", "--threads"]
        command += ["--nonblocking", "-o", str(spy), "-p", str(pid)]
        recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # py-spy attaching
    start = time.perf_counter()
    client.download(f"big/{name}", dest)
    took = time.perf_counter() - start
    if recorder is not None:
        recorder.send_signal(2)
        recorder.wait()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--disk", action="store_true")
    parser.add_argument("--pyspy", type=Path)
    harness.add_workdir(parser)
    args = parser.parse_args()
    layout = data.make(args.workdir, data.side_for(1), 1000)
    rundir = Path(tempfile.mkdtemp(prefix="coldab-"))
    try:
        with harness.Services(rundir) as services:
            broker = services.broker()
            pub = services.publisher("big", layout.big, broker)
            subs = {"old": subscriber(services, "old", broker, args.old)} if args.old else {}
            subs["new"] = subscriber(services, "new", broker, harness.REPO)
            clients = {k: Client(s.url) for k, s in subs.items()}
            for client in clients.values():
                harness.wait_online(client, ["big"])
            samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
            for r in range(args.repeat):
                for name in ("smooth.b2nd", "noise.b2nd"):
                    order = list(clients.items())
                    for k, client in order[::-1] if r % 2 else order:
                        if not args.disk:
                            refollow(client)
                        elif r == 0:  # cached whole, once
                            if name == "smooth.b2nd":
                                refollow(client)
                            client.download(f"big/{name}", rundir / name)
                        if args.disk:
                            drop_page_cache()
                        pid = subs[k].proc.pid
                        spy = None
                        if args.pyspy and k == "new":
                            spy = args.pyspy.with_name(f"{args.pyspy.name}-{name[:-5]}-{r}.txt")
                        before = cpu_seconds(pid), cpu_seconds(pub.pid), sum(os.times()[:2])
                        took = download(client, name, rundir / name, spy, pid)
                        after = cpu_seconds(pid), cpu_seconds(pub.pid), sum(os.times()[:2])
                        used = [b - a for a, b in zip(before, after)]
                        samples.setdefault((k, name), []).append((took, used[0]))
                        print(
                            f"{r} {name} {k}: {took:.3f} s; CPU s: subscriber {used[0]:.2f} "
                            f"publisher {used[1]:.2f} client {used[2]:.2f}",
                            flush=True,
                        )
            for k, child in subs.items():
                print(f"{k}: peak RSS {peak_rss(child.proc.pid)}")
            for (k, name), got in sorted(samples.items(), key=lambda item: item[0][::-1]):
                walls, cpus = [t for t, _ in got], [c for _, c in got]
                print(
                    f"{name:12} {k}: median {statistics.median(walls):.3f} s "
                    f"({min(walls):.3f}-{max(walls):.3f}), subscriber CPU "
                    f"{statistics.median(cpus):.2f} s"
                )
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


if __name__ == "__main__":
    main()
