"""caterva/protocol/listing.py: a manifest parsed as each dataset's etag and JSON text."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from caterva.errors import ProtocolError, UntrustedSource
from caterva.protocol import listing
from caterva.protocol.metadata import Manifest, ManifestDelta, info_of
from tests.unit.test_cache import make_info


def manifest(n=3):
    return Manifest("r", [make_info(f"d/{k}.bin", 2, seed=k)[0] for k in range(n)])


@pytest.mark.parametrize("indent", [None, 2])  # any whitespace JSON allows
def test_a_listing_holds_what_the_manifest_says(indent):
    m = manifest()
    got = listing.parse(json.dumps(m.to_dict(), indent=indent).encode())
    assert (got.root, got.etag, got.since) == ("r", m.etag, None)
    assert {p: (etag, info_of(text)) for p, (etag, text) in got.datasets.items()} == {
        d.path: (d.etag, d) for d in m.datasets
    }
    assert got.changes == {d.path: d.etag for d in m.datasets}


def test_a_delta_applies_to_what_is_held():
    m = manifest()
    new = make_info("d/9.bin", 1)[0]
    delta = ManifestDelta("r", m.etag, "f" * 32, datasets=[new], removed=["d/0.bin"])
    got = listing.parse(delta.to_bytes())
    assert got.since == m.etag and got.removed == ["d/0.bin"]
    assert got.changes == {"d/0.bin": None, "d/9.bin": new.etag}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b"\xff",
        b'{"root": "r", "etag": "e"} trailing',
        b'{"root": "r", "etag": "e", "datasets": [1]}',
        b'{"root": "r", "etag": "e", "datasets": [{}]}',
        b'{"root": "r", "datasets": []}',
        b'{"root": "../x", "etag": "e"}',
    ],
)
def test_what_is_not_a_manifest_is_a_protocol_error(body):
    with pytest.raises(ProtocolError):
        listing.parse(body)


def test_a_dataset_twice_or_altered_is_refused():
    m = manifest(1)
    body = m.to_dict()
    body["datasets"] = body["datasets"] * 2
    with pytest.raises(ProtocolError, match="twice"):
        listing.parse(json.dumps(body).encode())
    altered = replace(m.datasets[0], nbytes=1)  # its etag no longer matches its content
    with pytest.raises(UntrustedSource, match="does not match"):
        listing.parse(Manifest("r", [altered]).to_bytes())
