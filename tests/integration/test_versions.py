"""Every answer is one version: while a dataset is rewritten at the publisher (by write and
rename: only whole versions ever exist there), every route of the subscriber and every client
path answers with the chunks of one version, or fails cleanly (409 dataset_changed, 503), and
never with a 200 that mixes two. Each version fills the dataset with its own number, so a mixed
answer is one with two numbers in it."""

from __future__ import annotations

import io
import os
import threading

import blosc2
import httpx
import numpy as np

from caterva.client import Client
from caterva.errors import CatervaError
from tests.conftest import free_port
from tests.integration.authkit import demo_root
from tests.integration.test_subscriber import event_stream, next_event

N, CHUNK = 16 * 4096, 4096  # 16 chunks


def write_version(directory, k: int) -> None:
    tmp = directory / ".v.b2nd.tmp"
    blosc2.asarray(np.full(N, k, dtype=np.int64), urlpath=str(tmp), mode="w", chunks=(CHUNK,))
    os.replace(tmp, directory / "v.b2nd")


def one_version(values: np.ndarray) -> bool:
    return values.size == N and (values == values.flat[0]).all()


def test_concurrent_rewrites_never_produce_a_mixed_answer(spawn, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_version(data, 0)
    broker = spawn("bro", "--port", str(free_port()), "--statedir", str(tmp_path / "b")).url
    # a cache of 4 chunks: most reads fetch from the publisher while versions change under them
    _, sub, http = demo_root(spawn, tmp_path, broker, data, sub_args=("--cache-size", "200KiB"))
    events = event_stream(sub.url)

    stop = threading.Event()

    def writer():
        for k in range(1, 200):
            if stop.is_set():
                return
            write_version(data, k)

    def file_route() -> np.ndarray:
        r = http.get("/roots/demo/file/v.b2nd")
        r.raise_for_status()
        return blosc2.ndarray_from_cframe(r.content)[:]

    def npy_route() -> np.ndarray:
        r = http.get("/roots/demo/data/v.b2nd", params={"sel": "..."})
        r.raise_for_status()
        return np.load(io.BytesIO(r.content))

    def chunk_path(client: Client) -> np.ndarray:
        return client.dataset("demo/v.b2nd")[:]

    def download(client: Client) -> np.ndarray:
        path = client.download("demo/v.b2nd", tmp_path / f"v-{threading.get_ident()}.b2nd")
        return blosc2.open(str(path))[:]

    def root_download(client: Client) -> np.ndarray:
        target = tmp_path / f"root-{threading.get_ident()}"
        if target.exists():
            for f in target.rglob("*.b2nd"):
                f.unlink()
        client.download("demo", target)
        return blosc2.open(str(target / "v.b2nd"))[:]

    mixed: list[str] = []
    whole: dict[str, int] = {}
    refused: dict[str, int] = {}

    def reader(name, read):
        with Client(sub.url, selections="chunks") as client:
            for _ in range(25):
                try:
                    values = read(client) if read.__code__.co_argcount else read()
                except (httpx.HTTPStatusError, CatervaError) as exc:
                    status = getattr(getattr(exc, "response", None), "status_code", None)
                    code = getattr(exc, "code", None)
                    assert status in (409, 503) or code in (
                        "dataset_changed",
                        "unavailable",
                        "source_offline",
                    ), repr(exc)
                    refused[name] = refused.get(name, 0) + 1
                    continue
                if one_version(values):
                    whole[name] = whole.get(name, 0) + 1
                else:
                    mixed.append(f"{name}: {sorted(set(values.tolist()))}")

    routes = {
        "file": file_route,
        "npy": npy_route,
        "chunks": chunk_path,
        "download": download,
        "root download": root_download,
    }
    writing = threading.Thread(target=writer)
    writing.start()
    next_event(events, "update", path="v.b2nd", timeout=10)  # rewrites are reaching readers
    readers = [threading.Thread(target=reader, args=item) for item in routes.items()]
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join(120)
    stop.set()
    writing.join(60)
    assert mixed == []
    assert set(whole) == set(routes), (whole, refused)  # every route answered whole versions
