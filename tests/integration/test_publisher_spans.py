"""A publisher's batch answers sent from file ranges (sendfile, caterva.publisher.spans) are
byte for byte what reading the chunks gives (each chunk and digest as the one-chunk route
answers them), over the contract root, root-example and a dataset of special chunks (which is
read instead); and a file written in place while a batch is sent ends the answer short."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import blosc2
import httpx
import numpy as np
import pytest

from caterva.protocol import rest
from caterva.publisher import spans
from tests.conftest import Services, free_port
from tests.integration.source_contract import build_root

ROOT = "spans"
EXAMPLE = Path(__file__).parents[2] / "root-example"


@pytest.fixture(scope="module")
def pub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spans")
    services = Services(tmp)
    data = tmp / "data"
    shutil.copytree(EXAMPLE, data, ignore=shutil.ignore_patterns("*.py", "*.md", "*.txt"))
    build_root(data / "contract")
    blosc2.zeros((400, 1000), urlpath=str(data / "zeros.b2nd"), mode="w", chunks=(100, 1000))
    rng = np.random.default_rng(3)
    big = rng.integers(0, 2**63, size=4 << 20, dtype=np.int64)  # 32 MiB, incompressible
    for name in ("big.b2nd", "big2.b2nd"):
        blosc2.asarray(big, urlpath=str(data / name), mode="w", chunks=(1 << 20,))
    args = ["--http", "127.0.0.1:0", "--broker", f"mqtt://127.0.0.1:{free_port()}"]
    try:
        service = services.start("pub", ROOT, str(data), *args, "--statedir", str(tmp / "state"))
        with httpx.Client(base_url=service.url, timeout=30) as client:
            yield client, data
    finally:
        services.close()


def datasets(client: httpx.Client) -> dict[str, dict]:
    manifest = client.get(rest.manifest(ROOT)).json()
    return {d["path"]: d for d in manifest["datasets"]}


def one_by_one(client: httpx.Client, path: str, indices: list[int]) -> bytes:
    """The frames the buffered path makes: each chunk and digest as read for the one-chunk
    route."""
    out = []
    for n in indices:
        r = client.get(rest.chunk(ROOT, path, n))
        assert r.status_code == 200
        out.append(rest.FRAME.pack(n, len(r.content), bytes.fromhex(r.headers[rest.DIGEST_HEADER])))
        out.append(r.content)
    return b"".join(out)


def test_batches_are_the_bytes_reading_gives(pub):
    client, _ = pub
    found = datasets(client)
    assert {"contract/a.b2nd", "zeros.b2nd", "stations/names.b2nd"} <= found.keys()
    expected, wanted, ranged = [], [], 0
    for path, info in sorted(found.items()):
        indices = list(range(info["nchunks"]))
        text = rest.format_indices(indices)
        one = one_by_one(client, path, indices)
        r = client.get(rest.chunks(ROOT, path), params={"i": text})
        assert r.status_code == 200 and r.content == one, path
        ranged += "content-length" in r.headers  # sent from file ranges, not read
        if not path.startswith("big"):
            expected.append(one)
            wanted.append({"path": path, "i": text})
    many = client.post(rest.chunks_of_many(ROOT), json={"datasets": wanted})
    assert many.status_code == 200 and many.content == b"".join(expected)
    assert ranged >= 10  # the b2nd and b2frame files, and plain files' frames


def test_special_chunks_are_read_instead(pub):
    client, _ = pub
    r = client.get(rest.chunks(ROOT, "zeros.b2nd"), params={"i": "0-3"})
    assert r.status_code == 200 and "content-length" not in r.headers
    assert r.content == one_by_one(client, "zeros.b2nd", [0, 1, 2, 3])


def overwrite(path: Path) -> None:
    with open(path, "r+b") as f:  # a writer changing its last chunk
        f.seek(-(1 << 20), 2)
        f.write(b"changed")


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


@pytest.mark.parametrize("name, change", [("big.b2nd", overwrite), ("big2.b2nd", truncate)])
def test_a_file_changed_while_a_batch_is_sent_ends_it_short(pub, name, change):
    client, data = pub
    nchunks = datasets(client)[name]["nchunks"]
    with client.stream("GET", rest.chunks(ROOT, name), params={"i": f"0-{nchunks - 1}"}) as r:
        assert r.status_code == 200 and "content-length" in r.headers
        pieces = r.iter_raw(1 << 16)
        next(pieces)
        time.sleep(0.01)  # a different mtime_ns than the described one, even on coarse clocks
        change(data / name)
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in pieces:
                pass


def test_a_batch_of_more_files_than_a_plan_holds_open_is_read(pub):
    client, _ = pub
    wanted = [{"path": "contract/a.b2nd", "i": "0"}] * (spans.MAX_FILES + 1)
    r = client.post(rest.chunks_of_many(ROOT), json={"datasets": wanted})
    assert r.status_code == 200 and "content-length" not in r.headers
    assert r.content == one_by_one(client, "contract/a.b2nd", [0]) * (spans.MAX_FILES + 1)
