"""A publisher of a few thousand datasets (CI-sized stand-in for 100,000): what it holds while
serving them, and what a restart reads again."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

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


def open_fds(pid: int, root: Path) -> tuple[int, int]:
    """How many of ``pid``'s descriptors are files of ``root``, and how many are anything else
    (sockets, the statedir's database, the log)."""
    fds, targets = f"/proc/{pid}/fd", []
    for fd in os.listdir(fds):
        with contextlib.suppress(FileNotFoundError):  # closed since the listing
            targets.append(os.readlink(f"{fds}/{fd}"))
    inside = sum(t.startswith(f"{root}{os.sep}") for t in targets)
    return inside, len(targets) - inside


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
    """A publisher of 2,000 datasets that served all of them holds no more of its files open
    than its LRU allows, and otherwise what a publisher of 20 holds; nor the ~70 KB a dataset
    an open blosc2 container costs. (The small root's batches go out by sendfile, whose files
    are closed when the answer ends: maybe just after the client has it all, so its dataset
    files are not compared.)"""
    sizes = {}
    for root, n in ((tmp_path / "small", 20), (tmp_path / ROOT, DATASETS)):
        paths = build_root(root, n)
        service = start(spawn, tmp_path, root, "--open-files", "8")
        with httpx.Client(base_url=service.url, timeout=60) as client:
            serve_all(client, root.name, paths)
            serve_all(client, root.name, paths)
        sizes[n] = open_fds(service.proc.pid, root), rss_mib(service.proc.pid)
    ((_, small_other), small_rss), ((big_data, big_other), big_rss) = sizes[20], sizes[DATASETS]
    assert big_data <= 8, f"{big_data} of the root's files open, --open-files 8"
    # a socket more or less: the test client's keep-alive connection may still be open
    assert big_other <= small_other + 2, f"{big_other} other descriptors against {small_other}"
    assert big_rss < small_rss + 40, f"{big_rss:.0f} MiB against {small_rss:.0f} MiB"
