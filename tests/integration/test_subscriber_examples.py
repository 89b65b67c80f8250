"""Every dataset of root-example, read through a real subscriber with random selections,
equals numpy's answer on the original file."""

from __future__ import annotations

import io
import time
from pathlib import Path

import blosc2
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caterva.protocol import selection
from tests.conftest import EXAMPLE, Services, free_port


def originals() -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(EXAMPLE.rglob("*")):
        rel = path.relative_to(EXAMPLE).as_posix()
        if not path.is_file() or rel.startswith(("big/", "__pycache__")) or "/." in f"/{rel}":
            continue
        if path.suffix == ".b2nd":
            out[rel] = blosc2.open(str(path), mode="r")[...]
        elif path.suffix == ".b2frame":
            out[rel] = np.frombuffer(blosc2.open(str(path), mode="r")[:], dtype=np.uint8)
        else:
            out[rel] = np.frombuffer(path.read_bytes(), dtype=np.uint8)
        if path.suffix == ".nc":  # and each of its variables (caterva/publisher/hdf5.py)
            import h5py
            import hdf5plugin  # noqa: F401  (registers the Blosc2 filter)

            with h5py.File(path, "r") as f:
                names: list[str] = []
                f.visit(names.append)
                out.update(
                    (f"{rel}/{n}", f[n][()]) for n in names if isinstance(f[n], h5py.Dataset)
                )
    return out


ORIGINALS = originals()


@pytest.fixture(scope="module")
def subscriber(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("examples")
    services = Services(tmp)
    start = services.start
    broker = start("bro", "--port", str(free_port()), "--statedir", str(tmp / "broker")).url
    start(
        "pub",
        "example",
        str(EXAMPLE),
        "--broker",
        broker,
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp / "pub"),
    )
    url = start(
        "sub", "--broker", broker, "--http", "127.0.0.1:0", "--statedir", str(tmp / "sub")
    ).url
    client = httpx.Client(base_url=url + "/v1", timeout=30)
    for _ in range(500):  # the announcement arrives asynchronously after start
        if client.put("/roots/example/follow").status_code == 200:
            break
        time.sleep(0.02)
    yield client
    client.close()
    services.close()


def test_the_root_lists_every_example(subscriber):
    manifest = subscriber.get("/roots/example/manifest").json()
    listed = {d["path"] for d in manifest["datasets"]}
    assert set(ORIGINALS) <= listed
    kinds = {d["path"]: d["kind"] for d in manifest["datasets"]}
    assert kinds["signals/vibration.b2frame"] == "b2frame" and kinds["README.txt"] == "file"


def keys_for(shape):
    items = []
    for size in shape:
        bound = st.none() | st.integers(-size - 2, size + 2)
        step = st.none() | st.integers(-7, 7).filter(bool)
        items.append(st.one_of(st.integers(-size, size - 1), st.builds(slice, bound, bound, step)))
    return st.tuples(*items) if items else st.just(())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_selections_equal_numpy(subscriber, data):
    path = data.draw(st.sampled_from(sorted(ORIGINALS)))
    original = ORIGINALS[path]
    key = data.draw(keys_for(original.shape))
    ndrop = data.draw(st.integers(0, len(key)))
    key = key[: len(key) - ndrop] + ((Ellipsis,) if ndrop and data.draw(st.booleans()) else ())
    r = subscriber.get(f"/roots/example/data/{path}", params={"sel": selection.format(key)})
    assert r.status_code == 200, r.text
    got = np.load(io.BytesIO(r.content), allow_pickle=False)
    expected = np.array(original[key], dtype=original.dtype)  # a scalar keeps the array's dtype
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert np.array_equal(got, expected, equal_nan=got.dtype.kind in "fc")


@pytest.mark.parametrize("way", ["handoff", "file"])
def test_every_blosc2_example_downloads_whole_from_the_cache_as_the_original(
    subscriber, tmp_path, monkeypatch, way
):
    """Once cached whole, a Blosc2 dataset comes as the subscriber's /file frame, verified as
    it streams (client/framefile.py), or, on this machine, written by the subscriber into the
    client's file (client/handoff.py): either way the file is the chunk path's, byte for
    byte, and opens with blosc2 as the original."""
    from caterva.client import Client, download

    url = str(subscriber.base_url).removesuffix("/").removesuffix("/v1")
    blosc2_files = [p for p in sorted(ORIGINALS) if p.endswith((".b2nd", ".b2frame"))]
    for path in blosc2_files:
        for kind in ("chunks", way):
            (tmp_path / kind / path).parent.mkdir(parents=True, exist_ok=True)
    with Client(url) as client:
        chunked = {
            p: client.download(f"example/{p}", tmp_path / "chunks" / p) for p in blosc2_files
        }
        monkeypatch.setattr(download, "fill", None)  # the chunk path is not taken now
        if way == "handoff":
            monkeypatch.setattr(download, "FrameFile", None)  # nor /file
        else:
            client.local = False  # as a client on another machine
        for path in blosc2_files:
            assert (
                client.dataset(f"example/{path}").cached.chunks
                == client.info(f"example/{path}").nchunks
            )
            got = client.download(f"example/{path}", tmp_path / way / path)
            assert got.read_bytes() == chunked[path].read_bytes(), path
            assert_opens_as_the_original(got, path)


def assert_opens_as_the_original(got: Path, path: str) -> None:
    """``got``, a download of the example ``path``, opens with blosc2 as its original: the
    same values and the same vlmeta."""
    opened = blosc2.open(str(got), mode="r")
    original = blosc2.open(str(EXAMPLE / path), mode="r")
    values = opened[...] if path.endswith(".b2nd") else np.frombuffer(opened[:], np.uint8)
    assert np.array_equal(values, ORIGINALS[path], equal_nan=values.dtype.kind in "fc")
    meta = opened.schunk.vlmeta if path.endswith(".b2nd") else opened.vlmeta
    ometa = original.schunk.vlmeta if path.endswith(".b2nd") else original.vlmeta
    assert meta.getall() == ometa.getall(), path


def test_a_cold_root_download_writes_every_example_as_the_original(subscriber, tmp_path):
    """A root comes chunk by chunk (multi-dataset batches and windows, framed here from the
    pieces received): every file opens as its original, plain files are their bytes."""
    from caterva.client import Client

    url = str(subscriber.base_url).removesuffix("/").removesuffix("/v1")
    with Client(url) as client:
        client.unfollow("example")  # drops the cached chunks: the subscriber fetches them
        client.follow("example")
        base = client.download("example", tmp_path / "root")
    files = [p for p in ORIGINALS if not any(p.startswith(f"{q}/") for q in ORIGINALS)]
    for path in files:
        got = base / path
        if path.endswith((".b2nd", ".b2frame")):
            assert_opens_as_the_original(got, path)
        else:
            assert got.read_bytes() == (EXAMPLE / path).read_bytes(), path
    written = (p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())
    # big/ is there once the quick start ran (make_examples.py --big, gitignored): not compared
    assert sorted(p for p in written if not p.startswith("big/")) == sorted(files)


# --- `caterva show`: the subscriber prints, the output is what it was ------------------------

# every Blosc2 NDArray and HDF5 member: what `show` prints as an array
ARRAYS = sorted(p for p in ORIGINALS if p.endswith(".b2nd") or ".nc/" in p)


def printed_before(value, width: int) -> str:
    """numpy's text of ``value`` as `caterva show` printed it before the subscriber did
    (caterva/cli/values.py, then)."""
    with np.printoptions(linewidth=max(width, 40), threshold=1000, edgeitems=4):
        return np.array2string(np.asarray(value))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_selections_print_as_numpy_prints_the_original(subscriber, data):
    from caterva.protocol.dtypes import dtype_to_json

    path = data.draw(st.sampled_from(sorted(ORIGINALS)))  # plain files too, as bytes
    original = ORIGINALS[path]
    fields = original.dtype.names or ()
    field = data.draw(st.sampled_from([None, *fields]))
    view = original[field] if field is not None else original
    key = data.draw(keys_for(view.shape))  # a sub-array field's axis too
    width = data.draw(st.integers(1, 300))
    params = {"sel": selection.format(key), "width": width}
    if field is not None:
        params["field"] = field
    r = subscriber.get(f"/roots/example/printed/{path}", params=params)
    assert r.status_code == 200, r.text
    expected = np.asarray(view[key])
    assert r.json() == {
        "dtype": dtype_to_json(expected.dtype),
        "shape": list(expected.shape),
        "text": printed_before(expected, width),
    }


@pytest.fixture
def show(subscriber, capsys, monkeypatch):
    """show(*args) -> stdout of `caterva show ARGS` run in this process (run_command)."""
    from caterva.cli.app import run_command

    url = str(subscriber.base_url).removesuffix("/").removesuffix("/v1")
    monkeypatch.setenv("CATERVA_CONFIG", "/nonexistent")

    def _show(*args: str) -> str:
        monkeypatch.setattr("sys.argv", ["caterva", "show", *args, "--sub", url])
        capsys.readouterr()
        try:
            run_command()
        except SystemExit as exc:
            assert not exc.code, capsys.readouterr().err
        out, err = capsys.readouterr()
        assert err == ""
        return out

    return _show


def test_show_prints_every_example_as_it_did(show):
    """Each array whole, a selection of each and each field: the title and numpy's text of
    the original, as `caterva show` printed them when it read the values itself."""
    from caterva.cli.options import out
    from caterva.cli.render import dtype_text, shape_text
    from caterva.protocol.dtypes import dtype_to_json

    def expected(address: str, sel: str, field: str | None, value) -> str:
        value = np.asarray(value)
        where = f"{address}[{sel}]" + (f" field {field}" if field is not None else "")
        title = (
            f"{where}  {dtype_text(dtype_to_json(value.dtype))}  shape {shape_text(value.shape)}"
        )
        lines = [title, *printed_before(value, out().width).split("\n")]
        return "".join(line.rstrip(" ") + "\n" for line in lines)  # as display() writes

    for path in ARRAYS:
        original, address = ORIGINALS[path], f"example/{path}"
        sel = ",".join(["1:-1:2"] * original.ndim) or "..."
        key = selection.parse(sel)
        assert show(f"{address}[...]") == expected(address, "...", None, original), path
        assert show(f"{address}[{sel}]") == expected(address, sel, None, original[key]), path
        for field in original.dtype.names or ():
            got = show(f"{address}[{sel}]", "--field", field)
            assert got == expected(address, sel, field, original[field][key]), (path, field)
