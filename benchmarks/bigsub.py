"""The subscriber's side of ``python -m benchmarks.bigroot``: a subscriber following a root
of many tiny datasets, as a user would drive it (the CLI), with its health polled throughout.

    follow     `caterva follow ROOT` wall time, /v1/health latencies while it runs, RSS after
    change     one file replaced at the publisher -> its update event at the subscriber
    list       `caterva list ROOT --json` and as text (output to a pipe, discarded)
    restart    the subscriber stopped and started again with the root followed, until ready
"""

from __future__ import annotations

import os
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from benchmarks import harness
from caterva import Client

MIB = 2**20
CHANGES = 7  # files changed one after the other: the median of their delays is reported
POLL = 0.02  # seconds between two health requests


class HealthPoller(threading.Thread):
    """GET /v1/health every POLL seconds until stopped; the latency of each answer. (Back to
    back, the requests themselves would take half the subscriber's time.)"""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self._done = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while not self._done.is_set():
                began = time.perf_counter()
                client.get("/v1/health").raise_for_status()
                self.latencies.append(time.perf_counter() - began)
                self._done.wait(POLL)

    def stop(self) -> list[float]:
        self._done.set()
        self.join()
        return self.latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def cli(sub_url: str, *args: str) -> float:
    """Wall seconds of one `caterva ARGS --sub URL`, its output discarded."""
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "caterva", *args, "--sub", sub_url],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "CATERVA_CONFIG": "/nonexistent"},
    )
    return time.perf_counter() - began


def follow(sub: harness.Process, root: str) -> dict[str, float]:
    out: dict[str, float] = {}
    poller = HealthPoller(sub.url)
    poller.start()
    while not poller.latencies:  # polling before the follow starts
        time.sleep(0.01)
    out["follow (s)"] = cli(sub.url, "follow", root)
    latencies = poller.stop()
    out["health during follow, p50 (ms)"] = 1000 * percentile(latencies, 50)
    out["health during follow, p99 (ms)"] = 1000 * percentile(latencies, 99)
    out["health during follow, max (ms)"] = 1000 * max(latencies)
    out["RSS after follow (MiB)"] = harness.memory_of(sub.pid)["VmRSS"] / MIB
    return out


def variants(n: int) -> list[bytes]:
    """``n`` tiny .b2nd contents, each unlike the benchmark's template and each other."""
    import blosc2
    import numpy as np

    out = []
    for k in range(n):
        array = np.arange(64, dtype="f8") + time.time() + k  # unlike any earlier run's too
        out.append(blosc2.asarray(array, chunks=(32,), blocks=(16,)).to_cframe())
    return out


def change_delays(sub_url: str, root: str, files: list[tuple[str, Path]]) -> list[float]:
    """Each file replaced (atomically, as writers should) in turn, timed until the
    subscriber's update event for it arrives."""
    events: queue.Queue[tuple[float, dict]] = queue.Queue()
    client = Client(sub_url)
    stream = client.watch(root).open()  # open before the first change: nothing is missed

    def listen() -> None:
        try:
            for event in stream:
                events.put((time.perf_counter(), event))
        except Exception:  # the stream closed under us: the measurement is over
            return

    threading.Thread(target=listen, daemon=True).start()
    delays = []
    try:
        for (path, source), content in zip(files, variants(len(files))):
            aside = source.with_name("." + source.name)  # hidden: never published
            aside.write_bytes(content)
            began = time.perf_counter()
            os.replace(aside, source)
            while True:
                at, event = events.get(timeout=60)
                if event.get("event") == "update" and event.get("path") == path:
                    delays.append(at - began)
                    break
    finally:
        stream.close()
        client.close()
    return delays


def measure(
    services: harness.Services, broker: str, root: str, directory: Path, paths: list[str]
) -> dict[str, float]:
    out: dict[str, float] = {}
    sub = services.subscriber("sub", broker)
    with Client(sub.url) as client:
        harness.wait_online(client, [root])
    out.update(follow(sub, root))
    step = max(1, len(paths) // CHANGES)
    files = [(p, directory / p) for p in paths[::step][:CHANGES]]
    originals = [source.read_bytes() for _, source in files]
    delays = change_delays(sub.url, root, files)
    for (_, source), raw in zip(files, originals):
        source.write_bytes(raw)  # the root is reused by later runs: as it was
    out["change seen, median (ms)"] = 1000 * statistics.median(delays)
    out["change seen, max (ms)"] = 1000 * max(delays)
    out["list --json (s)"] = cli(sub.url, "list", root, "--json")
    out["list, text (s)"] = cli(sub.url, "list", root)
    services.stop(sub)
    began = time.perf_counter()
    sub = services.subscriber("sub", broker)
    out["subscriber restart (s)"] = time.perf_counter() - began
    out["RSS after restart (MiB)"] = harness.memory_of(sub.pid)["VmRSS"] / MIB
    return out
