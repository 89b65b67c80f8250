"""``python -m benchmarks.bigroot``: the ``big-root`` scenario, a root of many tiny datasets
(the archive case of issue 16), its figures printed as a table and written as JSON.

    --datasets N   tiny .b2nd files, copied from one template, 1,000 a directory (100,000)

Publisher: first start until ready, RSS after start, idle CPU (watching for changes), manifest
size plain and gzipped, RSS after serving every dataset once, restart until ready.
Subscriber (benchmarks/bigsub.py): `caterva follow` with /v1/health polled meanwhile, RSS
after it, one file changed until the subscriber tells it, `caterva list`, restart.
A broker (the embedded one) carries announcements and change events.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import bigsub, harness
from caterva.protocol import rest

ROOT = "big"
IDLE_SECONDS = 5.0
MIB = 2**20


def make_root(workdir: Path, n: int) -> Path:
    """``n`` copies of one tiny .b2nd (2 chunks), made once per size."""
    import blosc2
    import numpy as np

    root = workdir / f"bigroot-{n}"
    if (root / ".complete").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    template = workdir / "bigroot-template.b2nd"
    blosc2.asarray(
        np.arange(64, dtype="f8"), chunks=(32,), blocks=(16,), urlpath=str(template), mode="w"
    )
    raw = template.read_bytes()
    for i in range(n):
        folder = root / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(exist_ok=True)
        (folder / f"t{i:06d}.b2nd").write_bytes(raw)
    (root / ".complete").touch()  # hidden: never published
    return root


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(
    services: harness.Services, root: Path, statedir: Path, broker: str
) -> tuple[harness.Process, float]:
    began = time.perf_counter()
    process = services.start(
        "pub",
        "caterva",
        "pub",
        ROOT,
        str(root),
        "--http",
        "127.0.0.1:0",
        "--broker",
        broker,
        "--statedir",
        str(statedir),
    )
    return process, time.perf_counter() - began


def serve_all(client: httpx.Client, paths: list[str]) -> None:
    for at in range(0, len(paths), 1000):
        body = {"datasets": [{"path": p, "i": "0-1"} for p in paths[at : at + 1000]]}
        client.post(rest.chunks_of_many(ROOT), json=body).raise_for_status()


def measure(root: Path, rundir: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    with harness.Services(rundir) as services:
        broker = services.broker()
        pub, out["publisher first start (s)"] = start(services, root, rundir / "state", broker)
        out["publisher RSS after start (MiB)"] = harness.memory_of(pub.pid)["VmRSS"] / MIB
        before = cpu_seconds(pub.pid)
        time.sleep(IDLE_SECONDS)  # idle is what is measured: nothing to wait for
        out["publisher idle CPU (% core)"] = 100 * (cpu_seconds(pub.pid) - before) / IDLE_SECONDS
        with httpx.Client(base_url=pub.url, timeout=300) as client:
            for encoding in ("identity", "gzip"):
                with client.stream(
                    "GET", rest.manifest(ROOT), headers={"Accept-Encoding": encoding}
                ) as response:
                    size = sum(len(piece) for piece in response.iter_raw())
                out[f"manifest, {encoding} (MB)"] = size / 1e6
            paths = [d["path"] for d in client.get(rest.manifest(ROOT)).json()["datasets"]]
            serve_all(client, paths)
        memory = harness.memory_of(pub.pid)
        out["publisher RSS serving all (MiB)"] = memory["VmRSS"] / MIB
        out["publisher peak RSS (MiB)"] = memory["VmHWM"] / MIB
        out.update(bigsub.measure(services, broker, ROOT, root, paths))
        services.stop(pub)
        pub, out["publisher restart (s)"] = start(services, root, rundir / "state", broker)
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bigroot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--datasets", type=int, default=100_000, help="tiny datasets (100000)")
    harness.add_workdir(p)
    args = p.parse_args(argv)
    if args.datasets < 1:
        p.error("--datasets must be at least 1")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    root = make_root(workdir, args.datasets)
    scratch = Path(tempfile.mkdtemp(prefix="bigroot-", dir=workdir))
    try:
        results = measure(root, scratch)
    finally:  # the services' states and logs: ~120 MB at 100,000 datasets, left by every run
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"big-root: {args.datasets:,} datasets ({harness.REPO.name})")
    for name, value in results.items():
        print(f"  {name:32} {value:10.2f}")
    (workdir / f"bigroot-{args.datasets}.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
