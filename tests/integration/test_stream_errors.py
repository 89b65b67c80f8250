"""A source going away while a subscriber streams its chunks to a client: the client is told
the source went offline (an error frame ends the stream), and the subscriber logs one line,
no traceback."""

from __future__ import annotations

import blosc2
import numpy as np
import pytest

from caterva.errors import SourceOffline
from caterva.protocol import rest
from caterva.protocol.metadata import DatasetInfo
from tests.conftest import free_port
from tests.integration.authkit import demo_root

CHUNK = 1 << 17  # int64 items: 1 MiB chunks, so a stream of 48 is several windows


@pytest.fixture
def stack(spawn, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    noise = np.random.default_rng(3).integers(0, 2**63, size=48 * CHUNK, dtype=np.int64)
    blosc2.asarray(noise, urlpath=str(data / "big.b2nd"), mode="w", chunks=(CHUNK,))
    broker = spawn("bro", "--port", str(free_port()), "--statedir", str(tmp_path / "bro")).url
    pub, sub, http = demo_root(spawn, tmp_path, broker, data)
    yield pub, sub, http
    http.close()


def test_a_source_gone_mid_stream_ends_it_with_source_offline(stack):
    pub, sub, http = stack
    info = DatasetInfo.from_dict(http.get("/roots/demo/info/big.b2nd").json())
    reader, got = rest.BatchReader(rest.expected_frames([(info, range(48))])), []
    with http.stream("GET", "/roots/demo/chunks/big.b2nd", params={"i": "0-47"}) as response:
        assert response.status_code == 200
        pieces = response.iter_raw()
        got += reader.feed(next(pieces))  # headers sent, the first bytes here; then we stall,
        pub.kill()  # so the subscriber still has windows to fetch when its source is gone
        with pytest.raises(SourceOffline):
            for piece in pieces:
                got += reader.feed(piece)
    assert 0 < len(got) < 48 and [n for n, _, _ in got] == list(range(len(got)))
    sub.stop()
    log = sub.log_path.read_text()
    assert "Traceback" not in log and "already started" not in log, log
    assert len([line for line in log.splitlines() if "chunk stream ended early" in line]) == 1, log
