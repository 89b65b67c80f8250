"""``python -m benchmarks.run``: make data, start real services on loopback, time every
scenario ``--repeat`` times, print the table and write JSON.

    --scale 1      each cube is 1 GiB uncompressed (0.01: ~10 MiB, for a quick look)
    --datasets N   small datasets in the many-dataset root (1000)
    --repeat N     samples per scenario (quick ones take several per repeat)
    --peer caterva2   also install (once) and measure Caterva2 2025.6.26 on the same data, the
                   same scenarios, and print both side by side (benchmarks/peer_caterva2.py)

The older system's figures are quoted (and the speed-up over them shown) only at full size:
--scale 1 and --datasets 1000.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import data, harness, report, schedule
from benchmarks.result import Result, Target
from benchmarks.scenarios import Bench
from benchmarks.schedule import Scenario

MIB = 2**20
# The targets' reference: starlette's FileResponse under uvicorn, the HTTP stack caterva itself
# uses, always at hand. nginx (sendfile), when installed, is reported beside it.
BASELINE = "uvicorn"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scale", type=float, default=1.0, help="cube size, 1 = 1 GiB (default 1)")
    p.add_argument("--datasets", type=int, default=1000, help="small datasets (default 1000)")
    p.add_argument("--repeat", type=int, default=3, help="samples per scenario (default 3)")
    harness.add_workdir(p)
    p.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write results (default WORKDIR/results.json)",
    )
    p.add_argument(
        "--peer",
        choices=["caterva2"],
        default=None,
        help="also measure Caterva2 2025.6.26, side by side (installed once into WORKDIR)",
    )
    args = p.parse_args(argv)
    if args.scale <= 0 or args.repeat < 1 or args.datasets < 1:
        p.error("--scale must be positive, --repeat and --datasets at least 1")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    workdir = args.workdir.resolve()
    layout = data.make(workdir, data.side_for(args.scale), args.datasets, log=log)
    # a second, 8x smaller size: peak memory must not grow with the data
    small = data.make(workdir, data.side_for(args.scale / 8), 0, log=log)
    full = args.scale == 1 and args.datasets == 1000
    older = (lambda seconds: seconds) if full else (lambda seconds: None)

    rundir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    scratch = rundir / "scratch"
    scratch.mkdir()
    memory: list[dict] = []
    peer: list[Result] = []
    started = time.time()
    try:
        with harness.Services(rundir) as services:
            broker = services.broker()
            pub_big = services.publisher("big", layout.big, broker)
            services.publisher("many", layout.many, broker)
            sub = services.subscriber("sub", broker)
            servers = {"uvicorn": services.start("static", "benchmarks.static", str(layout.base))}
            nginx = services.nginx(layout.base)
            if nginx is not None:
                servers["nginx"] = nginx
            urls = {k: v.url for k, v in servers.items()}
            bench = Bench(layout, sub.url, scratch, args.repeat, log=log)
            play = schedule.Play(bench, services, log)
            try:
                harness.wait_online(bench.client, ["big", "many"])
                bench.client.follow("big")
                if args.peer:  # beside caterva's services: the samples of both alternate
                    play.beside_caterva2(workdir, layout, rundir, args.repeat)
                baselines(bench, urls)
                play(big(bench, older, side=bool(args.peer)))
                memory += peaks(pub_big, sub, _size_text(layout.big))
                play(many(bench, older, side=bool(args.peer)))
                if args.peer:  # what follows is caterva's alone
                    peer = play.close()
                    side_floors(bench, urls)
                bench.change_notify(Target(seconds=0.1))
            finally:
                play.close()
                bench.close()
            memory += memory_at(services, small, broker, scratch)
    finally:
        shutil.rmtree(rundir, ignore_errors=True)

    rows = [report.summary(r, bench.results) for r in bench.results]
    ours = {r["name"]: r for r in rows}
    peer_rows = [report.summary(r, peer) for r in peer]
    for row in peer_rows:  # Caterva2's time over caterva's, two ways
        row.update(report.leads(ours.get(row["name"], {}), row))
    meta = {
        "command": " ".join(
            ["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])]
        ),
        "scale": args.scale,
        "cube_side": layout.side,
        "datasets": args.datasets,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "git": _git_rev(),
        "duration_s": time.time() - started,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = args.json or workdir / "results.json"
    report.write_json(out, meta, rows, memory, peer_rows)
    print(
        f"\ncaterva benchmarks: cubes of {_size_text(layout.big)} each, {args.datasets} small "
        f"datasets, {args.repeat} repeats, {os.cpu_count()} CPUs"
    )
    print(report.table(rows))
    print()
    print(report.memory_table(memory))
    if peer_rows:
        print(
            "\nside by side with Caterva2, samples interleaved (medians; lead = Caterva2 "
            "median / caterva median; pair lead = median of Caterva2 / caterva, sample by sample)"
        )
        print(report.side_by_side(rows, peer_rows, args.datasets))
    print(f"\nresults: {out}")
    return {"meta": meta, "results": rows, "memory": memory, "peer": peer_rows}


CUBES = (  # file, what, the older system's cold and warm seconds
    ("smooth.b2nd", "compressible", 10.5, 0.38),
    ("noise.b2nd", "incompressible", 12.6, 1.3),
)
NONE = (Target(), None)  # no target, no older figure


def baselines(bench: Bench, servers: dict[str, str]) -> None:
    """The plain-HTTP baselines of whole-file downloads, and what copying the file costs."""
    for name, what, _, _ in CUBES:
        for server, url in servers.items():
            bench.baseline(f"big/{name}", f"baseline: {server} static file, {what}", server, url)
        bench.copy_floor(f"big/{name}")


def big(bench: Bench, older, side: bool) -> list[Scenario]:
    """Whole-file downloads, then selections; ``side``: with the rows only the side-by-side
    table has (the CLI where Caterva2 is measured so)."""
    out = []
    for name, what, cold_s, warm_s in CUBES:
        base = f"{BASELINE}_{name.split('.')[0]}"
        out += [
            bench.download(
                name,
                True,
                f"download {what}, cold",
                Target(fraction=0.7, baseline=base),
                older(cold_s),
            ),
            bench.download(
                name,
                False,
                f"download {what}, warm",
                Target(fraction=0.9, baseline=base),
                older(warm_s),
            ),
        ]
        if side:
            out.append(bench.download(name, False, f"download {name}, warm, CLI", *NONE, True))
    out.append(bench.select_cli(True, Target(seconds=0.3), older(0.5)))
    if side:
        out.append(bench.select_cli(False, *NONE))
    out.append(bench.select_client_warm(Target(seconds=0.015), older(0.036)))
    return out


def many(bench: Bench, older, side: bool) -> list[Scenario]:
    out = [
        bench.follow_many(Target(seconds=0.5), older(21.0)),
        bench.download_many(True, Target(seconds=2.0), older(39.0)),
        bench.download_many(False, Target(seconds=1.0), None),
        bench.cli_roots(Target(seconds=0.2), older(0.26)),
    ]
    return out + [bench.cli_list()] if side else out


def side_floors(bench: Bench, servers: dict[str, str]) -> None:
    """Plain-HTTP floors for the side-by-side rows that move other bytes than a whole cube."""
    tiny = bench.layout.small_path(bench.layout.datasets - 1)  # a file nothing rewrites
    selected = sum(map(len, data.selected_chunks(bench.layout)))
    for server, url in servers.items():
        bench.baseline(
            f"many/{tiny}", f"baseline: {server}, one tiny file", server, url, None, "tiny"
        )
        bench.baseline(
            "big/smooth.b2nd",
            f"baseline: {server}, the selected chunks' bytes",
            server,
            url,
            selected,
            "select",
        )
        bench.baseline_many(server, url)


def peaks(publisher: harness.Process, subscriber: harness.Process, size: str) -> list[dict]:
    return [
        {"process": "publisher", "data": size, "peak": publisher.memory().get("VmHWM", 0)},
        {"process": "subscriber", "data": size, "peak": subscriber.memory().get("VmHWM", 0)},
    ]


def memory_at(
    services: harness.Services, layout: data.Layout, broker: str, scratch: Path
) -> list[dict]:
    """Peak memory of a fresh publisher and subscriber serving smaller cubes, cold and warm."""
    from caterva import Client

    pub = services.publisher("small", layout.big, broker)
    sub = services.subscriber("sub-small", broker)
    with Client(sub.url) as client:
        harness.wait_online(client, ["small"])
        client.follow("small")
        for _ in ("cold", "warm"):
            for name in ("smooth.b2nd", "noise.b2nd"):
                client.download(f"small/{name}", scratch / name)
                (scratch / name).unlink()
    out = peaks(pub, sub, _size_text(layout.big))
    services.stop(sub)
    services.stop(pub)
    return out


def _size_text(big: Path) -> str:
    nbytes = data.blosc2.open(str(big / "smooth.b2nd"), mode="r").nbytes
    return f"{nbytes / MIB:.0f} MiB" if nbytes < 2**30 else f"{nbytes / 2**30:.1f} GiB"


def _git_rev() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=harness.REPO,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    main()
