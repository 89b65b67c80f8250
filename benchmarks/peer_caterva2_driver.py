"""The Python-API half of the Caterva2 peer, run by Caterva2's own interpreter (its venv).

Not part of caterva: it imports only the standard library and caterva2, so it never meets
caterva's blosc2. One JSON request a line on stdin, one JSON answer a line on stdout:

    {"op": "download", "path": "big/smooth.b2nd", "dest": "/x/smooth.b2nd"}  -> {"s": 1.2}

Run as ``driver.py URL show PATH SLICE`` it is instead a one-shot stand-in for ``cat2cli show
'PATH[SLICE]'``, which in 2025.6.26 passes the slice on as a *filter* expression (a string
given to ``Client.fetch``) that its subscriber cannot answer in time: the same imports as
cat2cli, the slice parsed by Caterva2's own parser, ``Client.fetch`` and ``print``.

Caterva2's download has a fixed read timeout of 5 s (``api_utils.get_client_and_url`` makes a
default httpx client), which a cold download exceeds whenever its subscriber needs longer to fill
the dataset before answering: the driver lifts it, the one change to the code path measured.

Each operation is timed here, around the one Client call a user would make (the pipe's
round trip is not counted, as caterva's in-process client pays none). Errors come back as
{"error": "..."} so the parent can report them instead of hanging.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import caterva2
import httpx
from caterva2 import api_utils

TIMEOUT = 3600.0


def _patient(make):
    def get_client_and_url(*args, **kwargs):
        client, url = make(*args, **kwargs)
        if isinstance(client, httpx.Client | httpx.AsyncClient):
            client.timeout = httpx.Timeout(TIMEOUT)
        return client, url

    return get_client_and_url


def download(client, path: str, dest: str) -> dict:
    start = time.perf_counter()
    client.download(path, dest)
    return {"s": time.perf_counter() - start}


def download_root(client, root: str, dest: str) -> dict:
    """A whole root, as its API offers it: list, then one download per dataset."""
    start = time.perf_counter()
    names = client.get_list(root)
    for name in names:
        client.download(f"{root}/{name}", str(Path(dest) / name))
    return {"s": time.perf_counter() - start, "count": len(names)}


def select(client, path: str, key: list, save: str | None = None) -> dict:
    index = tuple(slice(a, b) for a, b in key)
    start = time.perf_counter()
    values = client.fetch(path, slice_=index)
    seconds = time.perf_counter() - start
    if save:  # for the parent to compare with the original, untimed
        import numpy as np

        np.save(save, values)
    return {"s": seconds}


def subscribe(client, root: str) -> dict:
    start = time.perf_counter()
    answer = client.subscribe(root)
    return {"s": time.perf_counter() - start, "answer": answer}


def render(client, original: str, key: list) -> dict:
    """What `cat2cli show` should print for this selection of the original file."""
    import blosc2

    index = tuple(slice(a, b) for a, b in key)
    return {"text": str(blosc2.open(original, mode="r")[index])}


OPS = {
    "download": download,
    "download_root": download_root,
    "select": select,
    "subscribe": subscribe,
    "render": render,
}


def show(client, path: str, text: str) -> None:
    import caterva2.clients.cli  # noqa: F401 (what cat2cli imports: rich and the rest)

    print(client.fetch(path, slice_=tuple(api_utils.parse_slice(text))))


def main() -> None:
    api_utils.get_client_and_url = _patient(api_utils.get_client_and_url)
    client = caterva2.Client(sys.argv[1], timeout=TIMEOUT)
    if sys.argv[2:3] == ["show"]:
        return show(client, *sys.argv[3:5])
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = OPS[request.pop("op")](client, **request)
        except Exception as exc:  # reported to the parent, which fails the scenario
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
