"""caterva/protocol/rootetag.py: the manifest etag of a changing root, kept in blocks, is
always the one the definition gives (a hash of "\\0path\\0etag" for each dataset, in order)."""

from __future__ import annotations

import hashlib
import random
import tracemalloc

import pytest

from caterva.protocol import rootetag
from caterva.protocol.metadata import manifest_etag
from caterva.protocol.rootetag import RootEtag


def defined(root: str, etags: dict[str, str]) -> str:
    h = hashlib.blake2b(root.encode(), digest_size=16)
    for path in sorted(etags):
        h.update(f"\0{path}\0{etags[path]}".encode())
    return h.hexdigest()


@pytest.mark.parametrize("n", [0, 1, 7, 300])
def test_changes_give_the_etag_the_definition_gives(n, monkeypatch):
    monkeypatch.setattr(rootetag, "BLOCK", 4)  # many blocks, splits and empty ones
    rnd = random.Random(n)

    def etag():
        return f"{rnd.getrandbits(128):032x}"

    etags = {f"d{rnd.randrange(9)}/f{k}": etag() for k in range(n)}
    index = RootEtag("r", etags)
    assert index.etag == manifest_etag("r", etags.items()) == defined("r", etags)
    for _ in range(200):
        changes = {}
        for _ in range(rnd.randrange(1, 5)):
            known = list(etags)
            if known and rnd.random() < 0.3:
                changes[rnd.choice(known)] = None
            elif known and rnd.random() < 0.5:
                changes[rnd.choice(known)] = etag()
            else:
                changes[f"d{rnd.randrange(12)}/n{rnd.randrange(10**6)}"] = etag()
        after = {p: e for p, e in (etags | changes).items() if e is not None}
        assert index.etag_with(changes) == defined("r", after)
        assert index.etag == defined("r", etags)  # etag_with changes nothing
        index.apply(changes)
        etags = after
        assert index.etag == defined("r", etags)


def test_the_index_keeps_its_texts_only():
    """A publisher makes the index of its 100,000 datasets at the first change and keeps it:
    beside its blocks' texts (52 bytes a path here) it kept a dict of every path's etag (86 in
    all), and the etags themselves where no one else held them (the publisher's entries read
    theirs from their texts)."""
    etags = {f"d{i // 1000:04d}/t{i:06d}.b2nd": f"{i:032x}" for i in range(20_000)}
    tracemalloc.start()
    try:
        index = RootEtag("r", etags)
        assert index.etag == manifest_etag("r", etags.items())
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept / len(etags) < 65, kept / len(etags)
