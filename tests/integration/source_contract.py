"""The source API's contract (caterva.service.source_api), written once for every source: a
subclass says how to start one real source of root demo serving ``build_root``'s files
(``start``), and runs every test here against it. Answers are checked against the files
themselves (blosc2 reads them), so each source is held to the same truth.

Most tests share one source per class (they only read); a test that changes files starts its
own. A source that keeps no manifest history (KEEPS_HISTORY false) may answer ``since=`` with
the full manifest; one that keeps it must answer with the delta.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import blosc2
import httpx
import numpy as np
import pytest

from caterva.protocol import rest
from caterva.protocol.metadata import Manifest, ManifestDelta, chunk_digest
from caterva.protocol.seal import verify_manifest
from tests.conftest import Services

ROOT = "demo"
ARRAY = np.linspace(0, 1, 60 * 50).reshape(60, 50)
PLAIN = b"line of text\n" * 100_000 + np.random.default_rng(1).bytes(900_000)  # 3 chunks of 1 MiB


def build_root(directory: Path) -> Path:
    """A 2-D array (6 chunks), an SChunk frame (3 chunks), a plain file (3 chunks), and a link
    to a file outside the root (never served)."""
    (directory / "sub").mkdir(parents=True)
    blosc2.asarray(
        ARRAY, chunks=(20, 25), blocks=(10, 25), urlpath=str(directory / "a.b2nd"), mode="w"
    )
    frame = blosc2.SChunk(
        chunksize=4000,
        urlpath=str(directory / "sub" / "s.b2frame"),
        mode="w",
        cparams=blosc2.CParams(typesize=4),
    )
    for k in range(3):
        frame.append_data(np.arange(k * 1000, (k + 1) * 1000, dtype="i4"))
    del frame
    (directory / "notes.txt").write_bytes(PLAIN)
    secret = directory.parent / "secret.txt"
    secret.write_text("not to be served")
    (directory / "escape.txt").symlink_to(secret)
    return directory


def stored_chunks(path: Path) -> list[bytes]:
    container = blosc2.open(str(path), mode="r")
    schunk = container.schunk if isinstance(container, blosc2.NDArray) else container
    return [schunk.get_chunk(i) for i in range(schunk.nchunks)]


def batch(client: httpx.Client, path: str, indices: str) -> list[tuple[int, str, bytes]]:
    reader = rest.BatchReader((i, 2**30) for i in rest.parse_indices(indices))  # any size
    with client.stream("GET", rest.chunks(ROOT, path), params={"i": indices}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == rest.BATCH_TYPE
        frames = [f for part in response.iter_bytes() for f in reader.feed(part)]
    reader.close()
    return frames


def rebuilt(old: Manifest, response: httpx.Response) -> Manifest:
    """The manifest a client holding ``old`` has after this answer to ``since=old.etag``."""
    if "since" in response.json():
        return ManifestDelta.from_bytes(response.content).manifest(old.by_path())
    return Manifest.from_bytes(response.content)


@dataclass
class Served:
    client: httpx.Client  # of the source's base URL
    data: Path  # the root's files
    urls: dict[str, str]  # what start gave: the source's URL, and those of its helpers


class SourceContract:
    KEEPS_HISTORY = True

    def start(self, spawn, tmp: Path, data: Path) -> dict[str, str]:
        """Start the source (``spawn`` as tests.conftest's) of ``data``: its base URL as
        "source", and those of the services it needed."""
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def served(cls, tmp_path_factory):
        tmp = tmp_path_factory.mktemp("source")
        services = Services(tmp)
        try:
            urls = cls().start(services.start, tmp, build_root(tmp / "root"))
            with httpx.Client(base_url=urls["source"], timeout=30) as client:
                yield Served(client, tmp / "root", urls)
        finally:
            services.close()

    def test_manifest_has_its_etag_and_answers_304_while_unchanged(self, served):
        client = served.client
        first = client.get(rest.manifest(ROOT))
        etag = first.headers["etag"]
        assert etag == f'"{first.json()["etag"]}"'
        paths = sorted(d["path"] for d in first.json()["datasets"])
        assert paths == ["a.b2nd", "notes.txt", "sub/s.b2frame"]
        for header in (etag, f"W/{etag}", f'"stale", {etag}'):
            again = client.get(rest.manifest(ROOT), headers={"If-None-Match": header})
            assert (again.status_code, again.content) == (304, b""), header
            assert again.headers["etag"] == etag
        stale = client.get(rest.manifest(ROOT), headers={"If-None-Match": '"stale"'})
        assert stale.status_code == 200

    def test_manifest_is_gzipped_when_accepted(self, served):
        client = served.client
        plain = client.get(rest.manifest(ROOT), headers={"Accept-Encoding": "identity"})
        zipped = client.get(rest.manifest(ROOT), headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in plain.headers
        assert zipped.headers["content-encoding"] == "gzip"
        assert int(zipped.headers["content-length"]) < len(plain.content)
        assert zipped.content == plain.content  # httpx decoded it

    def test_since_an_etag_gives_what_changed_or_the_full_manifest(self, served):
        client = served.client
        current = Manifest.from_bytes(client.get(rest.manifest(ROOT)).content)
        unknown = client.get(rest.manifest(ROOT), params={"since": "0" * 32}).json()
        assert "since" not in unknown and unknown["etag"] == current.etag
        for since in (current.etag, f'"{current.etag}"'):  # quotes are fine
            r = client.get(rest.manifest(ROOT), params={"since": since})
            assert r.headers["etag"] == f'"{current.etag}"'
            assert rebuilt(current, r).by_path() == current.by_path()
            if self.KEEPS_HISTORY:
                assert r.json()["datasets"] == [] and r.json()["since"] == current.etag

    def test_chunks_are_the_stored_bytes_with_their_digests(self, served):
        client = served.client
        for path in ("a.b2nd", "sub/s.b2frame"):
            info = client.get(rest.info(ROOT, path))
            assert info.headers["etag"] == f'"{info.json()["etag"]}"'
            info = info.json()
            expected = stored_chunks(served.data / path)
            assert info["nchunks"] == len(expected) > 1
            for i, raw in enumerate(expected):
                r = client.get(rest.chunk(ROOT, path, i))
                assert r.status_code == 200
                assert r.headers["content-type"] == "application/octet-stream"
                assert r.content == raw
                assert r.headers[rest.DIGEST_HEADER] == chunk_digest(raw) == info["digests"][i]
            assert batch(client, path, f"0-{len(expected) - 1}") == [
                (i, chunk_digest(raw), raw) for i, raw in enumerate(expected)
            ]
        # order is the order asked; duplicates are dropped
        assert [i for i, _, _ in batch(client, "a.b2nd", "5,0-2,1")] == [5, 0, 1, 2]

    def test_a_plain_file_travels_as_compressed_chunks_of_its_bytes(self, served):
        info = served.client.get(rest.info(ROOT, "notes.txt")).json()
        assert (info["kind"], info["nchunks"], info["size"]) == ("file", 3, len(PLAIN))
        frames = batch(served.client, "notes.txt", "0-2")
        assert all(chunk_digest(raw) == digest == info["digests"][i] for i, digest, raw in frames)
        assert b"".join(blosc2.decompress(raw) for _, _, raw in frames) == PLAIN

    def test_many_datasets_in_one_stream_are_each_ones_batch_in_turn(self, served):
        client = served.client
        wanted = [{"path": "notes.txt", "i": "0"}, {"path": "a.b2nd", "i": "5,0-1"}]
        r = client.post(rest.chunks_of_many(ROOT), json={"datasets": wanted})
        assert r.status_code == 200 and r.headers["content-type"] == rest.BATCH_TYPE
        got = list(rest.BatchReader((i, 2**30) for i in (0, 5, 0, 1)).feed(r.content))
        assert got[:1] == batch(client, "notes.txt", "0")
        assert got[1:] == batch(client, "a.b2nd", "5,0-1")
        bad_bodies = [
            ({"datasets": [{"path": "missing.b2nd", "i": "0"}]}, 404, "unknown_dataset"),
            ({"datasets": [{"path": "a.b2nd", "i": "6"}]}, 404, "chunk_out_of_range"),
            ({"datasets": [{"path": "../secret.txt", "i": "0"}]}, 400, "invalid_name"),
            ({"datasets": [{"path": "a.b2nd", "i": "0-5"}] * 700}, 400, "bad_request"),
            ({"datasets": []}, 400, "bad_request"),
            ({"paths": ["a.b2nd"]}, 400, "bad_request"),
        ]
        for body, status, code in bad_bodies:
            r = client.post(rest.chunks_of_many(ROOT), json=body)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), body

    def test_whole_files_and_their_ranges(self, served):
        client = served.client
        whole = client.get(rest.file(ROOT, "a.b2nd"))
        assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
        assert np.array_equal(blosc2.ndarray_from_cframe(whole.content)[:], ARRAY)
        size = len(whole.content)
        part = client.get(rest.file(ROOT, "a.b2nd"), headers={"Range": "bytes=100-299"})
        assert part.status_code == 206 and part.content == whole.content[100:300]
        assert part.headers["content-range"] == f"bytes 100-299/{size}"
        tail = client.get(rest.file(ROOT, "a.b2nd"), headers={"Range": "bytes=-50"})
        assert tail.status_code == 206 and tail.content == whole.content[-50:]
        beyond = client.get(rest.file(ROOT, "a.b2nd"), headers={"Range": f"bytes={size}-"})
        assert beyond.status_code == 416
        assert beyond.json()["error"]["code"] == "range_not_satisfiable"
        assert beyond.headers["content-range"] == f"bytes */{size}"
        malformed = client.get(rest.file(ROOT, "a.b2nd"), headers={"Range": "bytes=9-2"})
        assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "bad_request"
        # a plain file is served as its original bytes, not as the frame it travels in
        plain = client.get(rest.file(ROOT, "notes.txt"), headers={"Range": "bytes=0-12"})
        assert plain.status_code == 206 and plain.content == b"line of text\n"

    BAD = [
        (f"/v1/roots/{ROOT}/info/%2E%2E/secret.txt", 400, "invalid_name"),
        (f"/v1/roots/{ROOT}/info/sub/%2E%2E/%2E%2E/secret.txt", 400, "invalid_name"),
        (f"/v1/roots/{ROOT}/file/%2E%2E%2Fsecret.txt", 400, "invalid_name"),
        (f"/v1/roots/{ROOT}/file//etc/passwd", 400, "invalid_name"),  # absolute
        (f"/v1/roots/{ROOT}/chunk/0//etc/passwd", 400, "invalid_name"),
        (rest.file(ROOT, "escape.txt"), 404, "unknown_dataset"),  # link out of the root
        (rest.info(ROOT, "missing.b2nd"), 404, "unknown_dataset"),
        (rest.chunk(ROOT, "missing.b2nd", 0), 404, "unknown_dataset"),
        (rest.manifest("other"), 404, "unknown_root"),
        ("/v1/roots/bad+root/manifest", 400, "invalid_name"),
        ("/v1/roots/b%2Fc/manifest", 404, "not_found"),
        (rest.chunk(ROOT, "a.b2nd", 6), 404, "chunk_out_of_range"),
        (rest.chunk(ROOT, "a.b2nd", -1), 404, "chunk_out_of_range"),
        (f"/v1/roots/{ROOT}/chunk/one/a.b2nd", 400, "bad_request"),
        (f"/v1/roots/{ROOT}/chunk/99999999999999999999999/a.b2nd", 404, "chunk_out_of_range"),
        (rest.chunks(ROOT, "a.b2nd") + "?i=0-9", 404, "chunk_out_of_range"),
        (rest.chunks(ROOT, "a.b2nd") + "?i=3-1", 400, "bad_request"),
        (rest.chunks(ROOT, "a.b2nd") + "?i=1,x", 400, "bad_request"),
        (rest.chunks(ROOT, "a.b2nd") + "?i=0-x", 400, "bad_request"),
        (rest.chunks(ROOT, "a.b2nd") + "?i=", 400, "bad_request"),
        (rest.chunks(ROOT, "a.b2nd") + "?i=0-99999", 400, "bad_request"),
        (rest.chunks(ROOT, "a.b2nd"), 400, "bad_request"),  # no list at all
        (rest.manifest(ROOT) + "?since=not-an-etag", 400, "bad_request"),
        (rest.manifest(ROOT) + "?since=" + "A" * 32, 400, "bad_request"),
        ("/v1/nothing/here", 404, "not_found"),
    ]

    def test_bad_input_gets_json_4xx_with_a_stable_code_and_never_a_server_path(self, served):
        client = served.client
        leaks = [str(served.data.parent), str(served.data.resolve().parent)]
        for url, status, code in self.BAD:
            r = client.get(url)
            assert (url, r.status_code) == (url, status), r.text
            assert r.headers["content-type"] == "application/json", url
            assert r.json()["error"]["code"] == code, url
            assert not any(leak in r.text for leak in leaks), url
        detail = client.get(rest.chunk(ROOT, "a.b2nd", 6)).json()["error"]["detail"]
        assert detail == {"index": 6, "nchunks": 6}
        assert client.post(rest.manifest(ROOT)).json()["error"]["code"] == "method_not_allowed"
        fine = (rest.manifest(ROOT), rest.info(ROOT, "a.b2nd"), rest.HEALTH, "/v1/stats")
        for url in (*fine, "/openapi.json"):
            r = client.get(url)
            assert r.status_code == 200 and not any(leak in r.text for leak in leaks), url

    def test_a_delta_since_an_older_manifest_rebuilds_the_current_one(self, spawn, tmp_path):
        """Deletions and renames included, with the seal that covers it, gzipped or not."""
        data = build_root(tmp_path / "root")
        client = httpx.Client(base_url=self.start(spawn, tmp_path, data)["source"], timeout=30)
        old = Manifest.from_bytes(client.get(rest.manifest(ROOT)).content)
        (data / "a.b2nd").unlink()
        os.rename(data / "sub" / "s.b2frame", data / "sub" / "renamed.b2frame")
        (data / "new.txt").write_text("new")
        deadline = time.monotonic() + 10
        while (
            new := Manifest.from_bytes(client.get(rest.manifest(ROOT)).content)
        ).by_path().keys() != {"notes.txt", "sub/renamed.b2frame", "new.txt"}:  # as events come
            assert time.monotonic() < deadline, new.by_path().keys()
            time.sleep(0.05)
        for encoding in ("identity", "gzip"):
            r = client.get(
                rest.manifest(ROOT),
                params={"since": old.etag},
                headers={"Accept-Encoding": encoding},
            )
            assert r.headers["etag"] == f'"{new.etag}"'
            manifest = rebuilt(old, r)
            assert manifest.etag == new.etag and manifest.by_path() == new.by_path()
            assert verify_manifest(manifest) == new.seal
            if self.KEEPS_HISTORY:
                delta = ManifestDelta.from_bytes(r.content)
                assert (delta.since, delta.etag, delta.removed) == (
                    old.etag,
                    new.etag,
                    ["a.b2nd", "sub/s.b2frame"],
                )
                assert sorted(d.path for d in delta.datasets) == ["new.txt", "sub/renamed.b2frame"]
