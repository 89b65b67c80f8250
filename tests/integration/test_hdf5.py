"""HDF5 files published as groups of datasets, read through a real subscriber (real broker,
publisher and subscriber processes): every storage layout equals h5py's answer, Blosc2 chunks
arrive as stored, and an unreadable HDF5 file costs one log line and nothing else."""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import blosc2
import httpx
import numpy as np
import pytest

from caterva.protocol import rest, selection, topics
from caterva.protocol.messages import Change
from caterva.protocol.metadata import DatasetInfo
from tests.conftest import Services, free_port
from tests.integration.test_publisher_mqtt import Listener, vm_hwm

h5py = pytest.importorskip("h5py")
hdf5plugin = pytest.importorskip("hdf5plugin")

ROOT = "demo"
COMPOUND = np.dtype([("n", "<i2"), ("xy", "<f4", (2,)), ("tag", "S3")])


@dataclass(frozen=True)
class Case:
    name: str
    shape: tuple[int, ...]
    dtype: str | np.dtype
    chunks: tuple[int, ...] | None = None  # None: contiguous
    filters: str = "none"  # blosc2, gzip, lzf, shuffle+gzip, none
    fill: object = None
    written: tuple[slice, ...] | None = None  # None: all of it; else only this region
    reverse: bool = False  # chunks written last to first (storage order != grid order)
    compact: bool = False

    def options(self) -> dict:
        if self.filters == "blosc2":
            return dict(hdf5plugin.Blosc2(cname="zstd", clevel=5))
        if self.filters == "gzip":
            return {"compression": "gzip", "compression_opts": 4}
        if self.filters == "lzf":
            return {"compression": "lzf"}
        if self.filters == "shuffle+gzip":
            return {"compression": "gzip", "shuffle": True}
        return {}


CASES = [
    Case("blosc2/f4", (100, 60), "f4", (30, 25), "blosc2"),
    Case("blosc2/sparse_i2", (9, 40, 33), "i2", (4, 16, 16), "blosc2", -7, np.s_[2:6, 5:20, :]),
    Case("blosc2/reversed_u8", (50, 50), "u8", (16, 16), "blosc2", reverse=True),
    Case("blosc2/c8", (70,), "c8", (32,), "blosc2"),
    Case("gzip/i8", (100, 60), "i8", (7, 13), "gzip"),
    Case("gzip/compound", (45,), COMPOUND, (20,), "gzip", (7, (1.5, 2.5), b"abc"), np.s_[3:25]),
    Case("gzip/bytes", (30, 4), "S5", (8, 3), "gzip"),
    Case("lzf/f8_partial", (1000,), "f8", (96,), "lzf", np.nan, np.s_[100:420]),
    Case("lzf/reversed_i4", (40, 30), "i4", (9, 7), "lzf", 3, reverse=True),
    Case("shuffle_gzip/bool", (64, 20), "?", (10, 10), "shuffle+gzip"),
    Case("chunked/c16", (17, 5, 6), "c16", (4, 5, 4), "none", 1 + 2j, np.s_[:9]),
    Case("contiguous/f8", (300, 1000), "f8"),  # 2.4 MB: cut into 1 MiB chunks
    Case("contiguous/big_endian", (33, 7), ">i4"),
    Case("compact/i4", (12,), "i4", compact=True),
    Case("scalar", (), "f8"),
]


def values(case: Case) -> np.ndarray:
    rng = np.random.default_rng(len(case.name) * 7919 + sum(map(ord, case.name)))
    dt = np.dtype(case.dtype)
    raw = rng.integers(0, 255, size=int(np.prod(case.shape)) * dt.itemsize, dtype=np.uint8)
    out = raw.view(dt).reshape(case.shape).copy()
    if dt.kind == "f":
        out = np.round(rng.normal(size=case.shape) * 100) / 8
    elif dt.kind == "c":
        out = (rng.normal(size=case.shape) + 1j * rng.normal(size=case.shape)).astype(dt)
    elif dt.kind == "b":
        out = rng.random(case.shape) > 0.7
    elif dt.names:
        out["xy"] = np.round(rng.normal(size=out["xy"].shape), 2)
    return np.asarray(out, dtype=dt)


def write_case(f, case: Case) -> None:
    kwargs = case.options()
    if case.chunks:
        kwargs["chunks"] = case.chunks
    if case.fill is not None:
        kwargs["fillvalue"] = np.array(case.fill, dtype=case.dtype)
    if case.compact:
        space = h5py.h5s.create_simple(case.shape)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        tid = h5py.h5t.py_create(np.dtype(case.dtype))
        group = f.require_group(case.name.rpartition("/")[0])
        h5py.h5d.create(group.id, case.name.rpartition("/")[2].encode(), tid, space, dcpl=dcpl)
        ds = f[case.name]
    else:
        ds = f.create_dataset(case.name, case.shape, case.dtype, track_times=False, **kwargs)
    data = values(case)
    if not case.shape:
        ds[()] = data
        return
    if case.reverse:  # one chunk at a time, the last one first
        grid = [range(0, s, c) for s, c in zip(case.shape, case.chunks)]
        starts = list(np.ndindex(*[len(g) for g in grid]))
        for index in reversed(starts):
            region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, case.chunks))
            ds[region] = data[region]
        return
    region = case.written or (slice(None),) * len(case.shape)
    ds[region] = data[region]


def make_file(path: Path, cases: list[Case]) -> None:
    with h5py.File(path, "w", track_order=True) as f:
        for case in cases:
            write_case(f, case)
        f.create_dataset("skipped/strings", data=["a", "bb"], dtype=h5py.string_dtype())
        f.create_dataset("skipped/a+b", data=[1, 2])  # '+' is an MQTT wildcard
        f["gzip/i8"].attrs.update({"units": "K", "scale": np.float32(0.5), "dims": [1, 2]})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hdf5")
    data = tmp / "data"
    data.mkdir()
    make_file(data / "cases.h5", CASES)
    (data / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    (data / "notes.txt").write_text("served as ever\n")
    services = Services(tmp)
    start = services.start
    broker = start("bro", "--port", str(free_port()), "--statedir", str(tmp / "broker")).url
    pub = start(
        "pub", ROOT, str(data), "--broker", broker, "--http", "127.0.0.1:0",
        "--statedir", str(tmp / "pub"),
    )  # fmt: skip
    sub = start("sub", "--broker", broker, "--http", "127.0.0.1:0", "--statedir", str(tmp / "sub"))
    client = httpx.Client(base_url=sub.url + "/v1", timeout=30)
    for _ in range(500):  # the announcement arrives asynchronously after start
        if client.put(f"/roots/{ROOT}/follow").status_code == 200:
            break
        time.sleep(0.02)
    yield data, pub, client, tmp
    client.close()
    services.close()


def read(client: httpx.Client, path: str, key) -> np.ndarray:
    r = client.get(f"/roots/{ROOT}/data/{path}", params={"sel": selection.format(key)})
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content), allow_pickle=False)


def keys_for(shape: tuple[int, ...]) -> list:
    if not shape:
        return [()]
    return [
        (Ellipsis,),
        tuple(slice(n // 5, max(n - n // 3, 1)) for n in shape),
        tuple(slice(None, None, 3) for _ in shape),
        tuple(slice(None, None, -2) for _ in shape),
        (shape[0] - 1,),
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_selections_equal_h5py(stack, case):
    data, _, client, _ = stack
    path = f"cases.h5/{case.name}"
    info = client.get(f"/roots/{ROOT}/info/{path}").json()
    assert info["kind"] == "b2nd" and info["shape"] == list(case.shape), info
    with h5py.File(data / "cases.h5", "r", locking=False) as f:
        original = f[case.name][()]
    for key in keys_for(case.shape):
        got, expected = read(client, path, key), np.asarray(original[key])
        assert got.dtype == expected.dtype and got.shape == expected.shape, key
        assert np.array_equal(got, expected, equal_nan=got.dtype.kind in "fc"), key


def test_file_stays_a_file_and_lists_what_it_holds(stack):
    data, _, client, _ = stack
    manifest = client.get(f"/roots/{ROOT}/manifest").json()
    kinds = {d["path"]: d["kind"] for d in manifest["datasets"]}
    assert kinds["cases.h5"] == kinds["notes.txt"] == kinds["broken.h5"] == "file"
    members = {p for p in kinds if p.startswith("cases.h5/")}
    assert members == {f"cases.h5/{c.name}" for c in CASES}
    info = client.get(f"/roots/{ROOT}/info/cases.h5").json()
    listed = info["vlmeta"]["hdf5"]
    assert listed["skipped"]["/skipped/strings"] == "variable-length or reference type"
    assert listed["skipped"]["/skipped/a+b"].startswith("name not usable in caterva")
    assert len(listed["skipped"]) == 2
    assert sorted(listed["datasets"]) == sorted(f"/{c.name}" for c in CASES)
    units = client.get(f"/roots/{ROOT}/info/cases.h5/gzip/i8").json()["vlmeta"]
    assert units == {"units": "K", "scale": 0.5, "dims": [1, 2]}
    whole = client.get(f"/roots/{ROOT}/file/cases.h5")
    assert whole.content == (data / "cases.h5").read_bytes()


def test_a_broken_hdf5_file_is_one_log_line_and_no_dataset(stack):
    _, pub, client, _ = stack
    kinds = {d["path"] for d in client.get(f"/roots/{ROOT}/manifest").json()["datasets"]}
    assert "broken.h5" in kinds and not any(p.startswith("broken.h5/") for p in kinds)
    said = [line for line in pub.log_path.read_text().splitlines() if "broken.h5" in line]
    assert len(said) == 1 and "not a readable HDF5 file" in said[0], said


@pytest.mark.parametrize("name", ["blosc2/sparse_i2", "gzip/compound", "contiguous/f8"])
def test_a_dataset_downloads_as_a_b2nd_file_from_publisher_and_subscriber(stack, name):
    data, pub, client, tmp = stack
    path = f"cases.h5/{name}"
    with h5py.File(data / "cases.h5", "r", locking=False) as f:
        expected = f[name][()]
    whole = httpx.get(pub.url + rest.file(ROOT, path), timeout=30)
    assert whole.status_code == 200, whole.text
    assert whole.content == client.get(f"/roots/{ROOT}/file/{path}").content
    (tmp / "got.b2nd").write_bytes(whole.content)
    got = blosc2.open(str(tmp / "got.b2nd"))[()]
    assert np.array_equal(got, expected, equal_nan=got.dtype.kind in "fc")
    part = httpx.get(pub.url + rest.file(ROOT, path), headers={"Range": "bytes=100-4099"})
    assert part.status_code == 206 and part.content == whole.content[100:4100]


def test_a_root_downloads_as_its_files_hdf5_files_whole(stack):
    """A root download writes the files as they are: an HDF5 file whole, its datasets
    (inside it) not again beside it, which would need it to be a file and a folder at once."""
    data, _, client, tmp = stack
    from caterva.client import Client

    with Client(str(client.base_url).rstrip("/").removesuffix("/v1")) as ours:
        ours.download(ROOT, tmp / "whole")
    got = sorted(p.relative_to(tmp / "whole").as_posix() for p in (tmp / "whole").rglob("*"))
    assert got == sorted(p.name for p in data.iterdir())
    assert (tmp / "whole" / "cases.h5").read_bytes() == (data / "cases.h5").read_bytes()


def test_blosc2_chunks_arrive_as_stored(stack):
    data, pub, client, tmp = stack
    name = "blosc2/reversed_u8"
    info = client.get(f"/roots/{ROOT}/info/cases.h5/{name}").json()
    read(client, f"cases.h5/{name}", (Ellipsis,))  # now in the subscriber's cache
    with h5py.File(data / "cases.h5", "r", locking=False) as f:
        ds = f[name]
        for index, start in enumerate(np.ndindex(4, 4)):
            _, stored = ds.id.read_direct_chunk(tuple(16 * i for i in start))
            served = httpx.get(pub.url + rest.chunk(ROOT, f"cases.h5/{name}", index)).content
            inside = stored.find(served)  # the Blosc2 chunk inside the stored one-chunk frame
            assert inside > 0 and len(served) > 64, index
            cached = list((tmp / "sub").rglob(f"{index}.{info['digests'][index]}"))
            assert len(cached) == 1 and cached[0].read_bytes() == served


@pytest.fixture
def publisher(spawn, tmp_path):
    """publisher(DIR) -> (the publisher of DIR as root demo, a Listener of its change events,
    their topic)."""
    made: list[Listener] = []

    def start(data: Path):
        broker = spawn("bro", "--port", str(free_port()), "--statedir", str(tmp_path / "bro"))
        pub = spawn(
            "pub", ROOT, str(data), "--broker", broker.url, "--http", "127.0.0.1:0",
            "--statedir", str(tmp_path / "pub"),
        )  # fmt: skip
        changes = topics.changes(httpx.get(pub.url + "/v1/health").json()["pub_id"], ROOT)
        made.append(Listener(broker.url, changes))
        return pub, made[-1], changes

    yield start
    for listener in made:
        listener.close()


def test_a_change_to_one_variable_is_told_for_its_changed_chunks_only(publisher, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    cases = [CASES[0], CASES[4], Case("contiguous/f8", (300, 1000), "f8")]
    make_file(data / "vars.h5", cases)
    pub, events, changes = publisher(data)
    info = httpx.get(pub.url + rest.info(ROOT, "vars.h5/gzip/i8")).json()

    with h5py.File(data / "vars.h5", "r+") as f:
        f["gzip/i8"][8:10, 14:30] = -1  # chunks (7, 13): rows in chunk row 1, columns 1-2
        f["contiguous/f8"][200, 0] = -1  # 1 MiB chunks of 131 rows: chunk 1
    seen: dict[str, set[int]] = {}
    want = {"vars.h5/gzip/i8": {1 * 5 + 1, 1 * 5 + 2}, "vars.h5/contiguous/f8": {1}}
    while {p: seen.get(p) for p in want} != want:
        change = Change.from_bytes(events.next(changes, timeout=10).payload)
        assert change.path in {"vars.h5", *want}, change  # never the Blosc2 variable
        assert change.op == "update"
        seen.setdefault(change.path, set()).update(change.chunks or [])
    after = httpx.get(pub.url + rest.info(ROOT, "vars.h5/gzip/i8")).json()
    changed = [i for i, (a, b) in enumerate(zip(info["digests"], after["digests"])) if a != b]
    assert changed == [6, 7]
    with h5py.File(data / "vars.h5", "r", locking=False) as f:
        expected = f["gzip/i8"][()]
    got = np.empty(expected.shape, expected.dtype)
    for index in changed:  # the new chunks, made again on demand, are the new values
        raw = httpx.get(pub.url + rest.chunk(ROOT, "vars.h5/gzip/i8", index)).content
        row, col = divmod(index, 5)
        region = np.s_[row * 7 : row * 7 + 7, col * 13 : col * 13 + 13]
        block = np.frombuffer(blosc2.decompress(raw), expected.dtype).reshape(7, 13)
        got[region] = block[: expected[region].shape[0], : expected[region].shape[1]]
        assert np.array_equal(got[region], expected[region])


def test_a_contiguous_dataset_bigger_than_the_chunk_budget_is_served_in_bounded_memory(
    publisher, tmp_path
):
    data = tmp_path / "data"
    data.mkdir()
    pub, events, changes = publisher(data)
    with h5py.File(tmp_path / "small.h5", "w") as f:  # h5py is loaded (17 MiB) lazily: first
        f.create_dataset("x", data=np.arange(4))
    os.replace(tmp_path / "small.h5", data / "small.h5")
    while Change.from_bytes(events.next(changes, timeout=60).payload).path != "small.h5/x":
        pass
    baseline = vm_hwm(pub.proc.pid)
    rows, size = 8192, 64 << 20  # 64 MiB of float64, contiguous; the budget is 1 MiB
    with h5py.File(tmp_path / "big.h5", "w") as f:
        ds = f.create_dataset("big", (rows, 1024), "f8", track_times=False)
        for start in range(0, rows, 512):  # written in parts: the test holds 4 MiB at most
            part = np.arange(start * 1024, (start + 512) * 1024, dtype="f8")
            ds[start : start + 512] = part.reshape(-1, 1024)
    os.replace(tmp_path / "big.h5", data / "big.h5")
    while Change.from_bytes(events.next(changes, timeout=60).payload).path != "big.h5/big":
        pass
    info = DatasetInfo.from_dict(httpx.get(pub.url + rest.info(ROOT, "big.h5/big")).json())
    assert info.nchunks == 64 and info.chunksize <= 1 << 20
    reader = rest.BatchReader(rest.expected_frames([(info, range(info.nchunks))]))
    with httpx.stream(
        "GET", pub.url + rest.chunks(ROOT, "big.h5/big"), params={"i": "0-63"}, timeout=60
    ) as response:
        for part in response.iter_bytes():
            for i, digest, raw in reader.feed(part):
                assert digest == info.digests[i] and len(raw) < 1 << 20
    reader.close()
    grew = vm_hwm(pub.proc.pid) - baseline
    assert grew < size // 4, f"RSS peak grew by {grew >> 20} MiB serving a {size >> 20} MiB dataset"
