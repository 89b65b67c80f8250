"""The publisher's source API against a real `caterva pub` process: the source contract
(source_contract.py), and what only a publisher does (its counters, files sent as stored).

No broker is running here on purpose: the broker URL points at a closed port, which also shows
that a broker that is down does not keep the REST API from serving.
"""

from __future__ import annotations

from caterva.protocol import rest
from tests.conftest import free_port
from tests.integration.source_contract import PLAIN, ROOT, SourceContract, batch


class TestPublisherSource(SourceContract):
    def start(self, spawn, tmp, data):
        service = spawn(
            "pub",
            ROOT,
            str(data),
            "--http",
            "127.0.0.1:0",
            "--broker",
            f"mqtt://127.0.0.1:{free_port()}",
            "--statedir",
            str(tmp / "state"),
        )
        return {"source": service.url}

    def test_nothing_is_served_at_the_top(self, served):
        """A publisher has no page (a subscriber serves one at /: test_web.py)."""
        r = served.client.get("/")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"

    def test_counters_count_what_was_served(self, served):
        client = served.client
        before = client.get("/v1/stats").json()
        singles = [client.get(rest.chunk(ROOT, "a.b2nd", i)).content for i in range(6)]
        frames = batch(client, "sub/s.b2frame", "0-2") + batch(client, "a.b2nd", "5,0-2,1")
        wanted = [{"path": "notes.txt", "i": "0-2"}]
        many = client.post(rest.chunks_of_many(ROOT), json={"datasets": wanted})
        frames += list(rest.BatchReader((i, 2**30) for i in range(3)).feed(many.content))
        etag = client.get(rest.manifest(ROOT)).headers["etag"]
        assert client.get(rest.manifest(ROOT), headers={"If-None-Match": etag}).status_code == 304
        after = client.get("/v1/stats").json()

        def grew(*keys):
            a, b = after, before
            for key in keys:
                a, b = a.get(key, 0), b.get(key, 0)
            return a - b

        assert (grew("chunks"), len(frames)) == (6 + 3 + 4 + 3, 3 + 4 + 3)
        assert grew("chunk_bytes") == sum(map(len, singles)) + sum(len(f[2]) for f in frames)
        datasets = [grew("datasets", p) for p in ("a.b2nd", "sub/s.b2frame", "notes.txt")]
        assert datasets == [6 + 4, 3, 3]
        endpoints = [grew("endpoints", e) for e in ("chunk", "chunks", "manifest", "stats")]
        assert endpoints == [6, 3, 2, 1]
        assert (grew("not_modified"), grew("errors")) == (1, 0)
        assert client.get("/v1/health").json()["broker_connected"] is False

    def test_every_bad_request_counts_as_an_error(self, served):
        client = served.client
        before = client.get("/v1/stats").json()["errors"]
        for url, status, _ in self.BAD:
            assert client.get(url).status_code == status, url
        assert client.post(rest.manifest(ROOT)).status_code == 405
        assert client.get("/v1/stats").json()["errors"] - before == len(self.BAD) + 1

    def test_files_are_sent_as_stored(self, served):
        client = served.client
        original = (served.data / "a.b2nd").read_bytes()
        assert client.get(rest.file(ROOT, "a.b2nd")).content == original
        assert client.get(rest.file(ROOT, "notes.txt")).content == PLAIN
