"""A publisher of a few thousand datasets (CI-sized stand-in for 100,000): what it holds while
serving them, and what a restart reads again."""

from __future__ import annotations

import os

import blosc2
import httpx
import numpy as np
import pytest

from caterva.protocol import rest
from tests.conftest import free_port

ROOT = "big"
DATASETS = 2000


def build_root(root, n=DATASETS):
    """``n`` tiny .b2nd files copied from one template, 100 to a directory."""
    template = root.parent / f"{root.name}-template.b2nd"
    blosc2.asarray(
        np.arange(64, dtype="f8"), chunks=(32,), blocks=(16,), urlpath=str(template), mode="w"
    )
    raw = template.read_bytes()
    for i in range(n):
        folder = root / f"d{i // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"t{i:05d}.b2nd").write_bytes(raw)
    return sorted(f"d{i // 100:03d}/t{i:05d}.b2nd" for i in range(n))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def serve_all(client, root, paths):
    """Every chunk of every dataset, 500 datasets a request."""
    for start in range(0, len(paths), 500):
        group = paths[start : start + 500]
        body = {"datasets": [{"path": p, "i": "0-1"} for p in group]}
        response = client.post(rest.chunks_of_many(root), json=body)
        assert response.status_code == 200
        reader = rest.BatchReader((i, 2**20) for _ in group for i in (0, 1))
        assert len(list(reader.feed(response.content))) == 2 * len(group)
        reader.close()


def start(spawn, tmp_path, root, *extra):
    return spawn(
        "pub",
        root.name,
        str(root),
        "--http",
        "127.0.0.1:0",
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        "--statedir",
        str(tmp_path / "state" / root.name),
        *extra,
    )


@pytest.mark.timeout(300)
def test_serving_every_dataset_keeps_only_a_bounded_set_open(spawn, tmp_path):
    """Compared with a publisher of 20 datasets that served them all: a publisher of 2,000
    that served all of its own holds no more open files than its LRU allows, and not the
    ~70 KB a dataset an open blosc2 container costs."""
    sizes = {}
    for root, n in ((tmp_path / "small", 20), (tmp_path / ROOT, DATASETS)):
        paths = build_root(root, n)
        service = start(spawn, tmp_path, root, "--open-files", "8")
        with httpx.Client(base_url=service.url, timeout=60) as client:
            serve_all(client, root.name, paths)
            serve_all(client, root.name, paths)
        sizes[n] = open_fds(service.proc.pid), rss_mib(service.proc.pid)
    (small_fds, small_rss), (big_fds, big_rss) = sizes[20], sizes[DATASETS]
    assert big_fds <= small_fds + 8, f"{big_fds} open files against {small_fds}"
    assert big_rss < small_rss + 40, f"{big_rss:.0f} MiB against {small_rss:.0f} MiB"
