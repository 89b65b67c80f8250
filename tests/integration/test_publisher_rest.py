"""The publisher's source API against a real `caterva pub` process.

No broker is running here on purpose: the broker URL points at a closed port, which also shows
that a broker that is down does not keep the REST API from serving.
"""

from __future__ import annotations

import os
import time

import blosc2
import httpx
import numpy as np
import pytest

from caterva.protocol import rest
from caterva.protocol.metadata import Manifest, ManifestDelta, chunk_digest
from caterva.protocol.seal import verify_manifest
from tests.conftest import free_port

ROOT = "demo"


def build_root(root):
    """A 2-D array (6 chunks), an SChunk frame (3 chunks) and a plain file (3 chunks)."""
    root.mkdir()
    data = np.linspace(0, 1, 60 * 50).reshape(60, 50)
    blosc2.asarray(data, chunks=(20, 25), blocks=(10, 25), urlpath=str(root / "a.b2nd"), mode="w")
    (root / "sub").mkdir()
    frame = blosc2.SChunk(
        chunksize=4000,
        urlpath=str(root / "sub" / "s.b2frame"),
        mode="w",
        cparams=blosc2.CParams(typesize=4),
    )
    for k in range(3):
        frame.append_data(np.arange(k * 1000, (k + 1) * 1000, dtype="i4"))
    del frame
    rng = np.random.default_rng(1)
    plain = b"line of text\n" * 100_000 + rng.bytes(900_000)  # ~2.2 MB: 3 chunks of 1 MiB
    (root / "notes.txt").write_bytes(plain)


@pytest.fixture
def publisher(spawn, tmp_path):
    root = tmp_path / "root"
    build_root(root)
    service = spawn(
        "pub",
        ROOT,
        str(root),
        "--http",
        "127.0.0.1:0",
        "--broker",
        f"mqtt://127.0.0.1:{free_port()}",
        "--statedir",
        str(tmp_path / "state"),
    )
    with httpx.Client(base_url=service.url, timeout=10) as client:
        yield client, root


def stored_chunks(path):
    container = blosc2.open(str(path), mode="r")
    schunk = container.schunk if isinstance(container, blosc2.NDArray) else container
    return [schunk.get_chunk(i) for i in range(schunk.nchunks)]


def batch(client, path, indices):
    reader = rest.BatchReader((i, 2**30) for i in rest.parse_indices(indices))  # any size
    with client.stream("GET", rest.chunks(ROOT, path), params={"i": indices}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == rest.BATCH_TYPE
        frames = [f for part in response.iter_bytes() for f in reader.feed(part)]
    reader.close()
    return frames


def test_chunks_equal_what_blosc2_reads_and_verify(publisher):
    client, root = publisher
    manifest = client.get(rest.manifest(ROOT)).json()
    paths = sorted(d["path"] for d in manifest["datasets"])
    assert paths == ["a.b2nd", "notes.txt", "sub/s.b2frame"]
    served = 0
    for path in ("a.b2nd", "sub/s.b2frame"):
        info = client.get(rest.info(ROOT, path)).json()
        expected = stored_chunks(root / path)
        assert info["nchunks"] == len(expected) > 1
        for i, raw in enumerate(expected):
            response = client.get(rest.chunk(ROOT, path, i))
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/octet-stream"
            assert response.content == raw
            assert response.headers[rest.DIGEST_HEADER] == chunk_digest(raw) == info["digests"][i]
        frames = batch(client, path, f"0-{len(expected) - 1}")
        assert [(i, d, b) for i, d, b in frames] == [
            (i, chunk_digest(raw), raw) for i, raw in enumerate(expected)
        ]
        served += 2 * len(expected)

    # order is the order asked; duplicates are dropped
    order = [i for i, _, _ in batch(client, "a.b2nd", "5,0-2,1")]
    assert order == [5, 0, 1, 2]

    # a plain file travels as compressed chunks of its bytes
    info = client.get(rest.info(ROOT, "notes.txt")).json()
    original = (root / "notes.txt").read_bytes()
    assert (info["kind"], info["nchunks"], info["size"]) == ("file", 3, len(original))
    frames = batch(client, "notes.txt", "0-2")
    assert all(chunk_digest(raw) == digest == info["digests"][i] for i, digest, raw in frames)
    assert b"".join(blosc2.decompress(raw) for _, _, raw in frames) == original

    stats = client.get("/v1/stats").json()
    assert stats["chunks"] == served + 4 + 3
    assert stats["datasets"] == {"a.b2nd": 6 + 6 + 4, "sub/s.b2frame": 6, "notes.txt": 3}
    assert stats["endpoints"]["chunk"] == 9 and stats["endpoints"]["chunks"] == 4
    assert client.get("/v1/health").json()["broker_connected"] is False


def test_whole_file_streams_with_range(publisher):
    client, root = publisher
    original = (root / "a.b2nd").read_bytes()
    whole = client.get(rest.file(ROOT, "a.b2nd"))
    assert whole.status_code == 200 and whole.content == original

    part = client.get(rest.file(ROOT, "a.b2nd"), headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == original[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(original)}"
    tail = client.get(rest.file(ROOT, "a.b2nd"), headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == original[-50:]

    beyond = client.get(rest.file(ROOT, "a.b2nd"), headers={"Range": f"bytes={len(original)}-"})
    assert beyond.status_code == 416
    assert beyond.json()["error"]["code"] == "range_not_satisfiable"
    assert beyond.headers["content-range"] == f"bytes */{len(original)}"
    malformed = client.get(rest.file(ROOT, "a.b2nd"), headers={"Range": "bytes=9-2"})
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "bad_request"

    # a plain file is served as its original bytes, not as the frame it travels in
    plain = client.get(rest.file(ROOT, "notes.txt"), headers={"Range": "bytes=0-12"})
    assert plain.status_code == 206 and plain.content == b"line of text\n"


def test_manifest_etag_and_not_modified(publisher):
    client, _ = publisher
    first = client.get(rest.manifest(ROOT))
    etag = first.headers["etag"]
    assert etag == f'"{first.json()["etag"]}"'
    again = client.get(rest.manifest(ROOT), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert client.get(rest.manifest(ROOT), headers={"If-None-Match": '"stale"'}).status_code == 200
    assert client.get("/v1/stats").json()["not_modified"] == 1


def test_manifest_gzipped_and_as_a_delta_since_an_etag(publisher):
    """A delta applied to the manifest it starts from gives the current one, deletions and
    renames included, and carries the seal that covers it; an etag the publisher does not
    know gets the full manifest."""
    client, root = publisher
    plain = client.get(rest.manifest(ROOT), headers={"Accept-Encoding": "identity"})
    zipped = client.get(rest.manifest(ROOT), headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(plain.content)
    assert zipped.content == plain.content  # httpx decoded it
    old = Manifest.from_bytes(plain.content)

    (root / "a.b2nd").unlink()
    os.rename(root / "sub" / "s.b2frame", root / "sub" / "renamed.b2frame")
    (root / "new.txt").write_text("new")
    deadline = time.monotonic() + 10
    while (
        new := Manifest.from_bytes(client.get(rest.manifest(ROOT)).content)
    ).by_path().keys() != {"notes.txt", "sub/renamed.b2frame", "new.txt"}:  # events, a few ms apart
        assert time.monotonic() < deadline, new.by_path().keys()
        time.sleep(0.05)

    for encoding in ("identity", "gzip"):
        response = client.get(
            rest.manifest(ROOT), params={"since": old.etag}, headers={"Accept-Encoding": encoding}
        )
        assert response.headers["etag"] == f'"{new.etag}"'
        delta = ManifestDelta.from_bytes(response.content)
        assert (delta.since, delta.etag, delta.removed) == (
            old.etag,
            new.etag,
            ["a.b2nd", "sub/s.b2frame"],
        )
        assert sorted(d.path for d in delta.datasets) == ["new.txt", "sub/renamed.b2frame"]
        rebuilt = delta.manifest(old.by_path())
        assert rebuilt.etag == new.etag and rebuilt.by_path() == new.by_path()
        assert verify_manifest(rebuilt) == new.seal
    for since in ("0" * 32, f'"{old.etag}"'):  # unknown: the full manifest; quotes are fine
        body = client.get(rest.manifest(ROOT), params={"since": since}).json()
        assert ("since" in body) == (since != "0" * 32)
    assert client.get(rest.manifest(ROOT), params={"since": new.etag}).json()["datasets"] == []


def test_bad_input_gets_json_4xx_and_never_a_server_path(publisher, tmp_path):
    client, root = publisher
    secret = tmp_path / "secret.txt"
    secret.write_text("not to be served")
    (root / "escape.txt").symlink_to(secret)
    m = rest.manifest(ROOT)
    cases = [
        (f"/v1/roots/{ROOT}/info/%2E%2E/secret.txt", 400, "invalid_name"),
        (f"/v1/roots/{ROOT}/info/sub/%2E%2E/%2E%2E/secret.txt", 400, "invalid_name"),
        (f"/v1/roots/{ROOT}/file/%2E%2E%2Fsecret.txt", 400, "invalid_name"),
        (f"/v1/roots/{ROOT}/file//etc/passwd", 400, "invalid_name"),  # absolute
        (f"/v1/roots/{ROOT}/chunk/0//etc/passwd", 400, "invalid_name"),
        (rest.file(ROOT, "escape.txt"), 404, "unknown_dataset"),  # link out of the root
        (rest.info(ROOT, "missing.b2nd"), 404, "unknown_dataset"),
        (rest.manifest("other"), 404, "unknown_root"),
        ("/v1/roots/bad+root/manifest", 400, "invalid_name"),
        (rest.chunk(ROOT, "a.b2nd", 6), 404, "chunk_out_of_range"),
        (rest.chunk(ROOT, "a.b2nd", -1), 404, "chunk_out_of_range"),
        (f"/v1/roots/{ROOT}/chunk/one/a.b2nd", 400, "bad_request"),
        (f"/v1/roots/{ROOT}/chunk/99999999999999999999999/a.b2nd", 404, "chunk_out_of_range"),
        (rest.chunks(ROOT, "a.b2nd") + "?i=0-9", 404, "chunk_out_of_range"),
        (rest.chunks(ROOT, "a.b2nd") + "?i=3-1", 400, "bad_request"),
        (rest.chunks(ROOT, "a.b2nd") + "?i=1,x", 400, "bad_request"),
        (rest.chunks(ROOT, "a.b2nd") + "?i=", 400, "bad_request"),
        (rest.chunks(ROOT, "a.b2nd") + "?i=0-99999", 400, "bad_request"),
        (rest.chunks(ROOT, "a.b2nd"), 400, "bad_request"),  # no list at all
        (m + "?since=not-an-etag", 400, "bad_request"),
        (m + "?since=" + "A" * 32, 400, "bad_request"),
        ("/v1/nothing/here", 404, "not_found"),
        ("/", 404, "not_found"),
    ]
    leaks = [str(tmp_path), str(tmp_path.resolve()), os.fspath(root)]
    for url, status, code in cases:
        response = client.get(url)
        assert (url, response.status_code) == (url, status), response.text
        assert response.headers["content-type"] == "application/json", url
        assert response.json()["error"]["code"] == code, url
        assert not any(leak in response.text for leak in leaks), url
    assert client.post(m).json()["error"]["code"] == "method_not_allowed"
    for url in (m, rest.info(ROOT, "a.b2nd"), "/v1/health", "/v1/stats", "/openapi.json"):
        response = client.get(url)
        assert response.status_code == 200
        assert not any(leak in response.text for leak in leaks), url
    assert client.get("/v1/stats").json()["errors"] == len(cases) + 1
