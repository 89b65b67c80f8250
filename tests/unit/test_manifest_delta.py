"""Manifest deltas: whatever happened to a root since a version the publisher still knows, the
delta since that version, applied to it, is exactly the current manifest."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import blosc2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from caterva.protocol.metadata import ManifestDelta
from caterva.publisher.catalog import Catalog
from caterva.publisher.versions import HISTORY, PATHS, Versions

NAMES = ["a.b2nd", "b.b2nd", "d/c.b2nd", "d/e/f.b2nd"]


def templates(folder: Path) -> list[bytes]:
    out = []
    for value in range(3):
        path = folder / f"t{value}.b2nd"
        blosc2.asarray(np.full(40, value, dtype="i4"), chunks=(20,), urlpath=str(path), mode="w")
        out.append(path.read_bytes())
    return out


steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.sampled_from(NAMES), st.integers(0, 2)),
        st.tuples(st.just("delete"), st.sampled_from(NAMES)),
        st.tuples(st.just("rename"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
        st.tuples(st.just("rmdir"), st.just("d")),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(steps=steps, watched=st.booleans())
def test_a_delta_applied_to_any_recent_version_gives_the_current_manifest(steps, watched):
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "root"
        root.mkdir()
        contents = templates(base)
        catalog = Catalog("demo", root, base / "state" / "frames")
        catalog.scan()
        seen = {catalog.manifest.etag: catalog.manifest.by_path()}
        for step in steps:
            touched = apply(root, step, contents)
            # as events name paths (watching), or as a full scan finds them (polling)
            catalog.refresh(touched) if watched else catalog.scan()
            seen[catalog.manifest.etag] = catalog.manifest.by_path()
        final = catalog.manifest
        assert final.by_path().keys() == {f[0] for f in catalog.tree.walk()}
        for etag, state in seen.items():
            _, body = catalog.manifest_body(since=etag)
            delta = ManifestDelta.from_bytes(body)
            assert (delta.since, delta.etag) == (etag, final.etag)
            assert not set(delta.removed) & {d.path for d in delta.datasets}
            rebuilt = delta.manifest(state)
            # content is what versions are made of: a file rewritten with the same content
            # (only size and mtime move) is no new version, in full manifests (304) as here
            assert rebuilt.etag == final.etag
            assert etags(rebuilt.by_path()) == etags(final.by_path())


def test_versions_older_than_the_history_get_no_delta():
    versions = Versions("0" * 32)
    for n in range(1, HISTORY + 2):
        versions.record(f"{n:032x}", [f"p{n}"])
    assert versions.changed_since("0" * 32) is None  # forgotten: the full manifest
    assert versions.changed_since(f"{1:032x}") == {f"p{n}" for n in range(2, HISTORY + 2)}
    assert versions.changed_since(f"{HISTORY + 1:032x}") == set()
    versions.record(f"{5:032x}", ["p5"])  # back to an earlier version: the latest one counts
    assert versions.changed_since(f"{5:032x}") == set()
    assert versions.changed_since(f"{HISTORY + 1:032x}") == {"p5"}


def test_the_history_holds_a_bounded_number_of_paths():
    """A first scan names every dataset (100,000 paths), a root rewritten whole as many again
    at each version: older versions are forgotten past PATHS paths, not kept in memory."""
    versions = Versions("0" * 32)
    versions.record(f"{1:032x}", [f"p{n}" for n in range(PATHS + 1)])  # alone too many
    assert versions.changed_since("0" * 32) is None
    versions.record(f"{2:032x}", [f"q{n}" for n in range(PATHS // 2)])
    versions.record(f"{3:032x}", [f"r{n}" for n in range(PATHS // 2)])
    assert versions.changed_since(f"{1:032x}") == {
        f"{c}{n}" for c in "qr" for n in range(PATHS // 2)
    }
    versions.record(f"{4:032x}", ["s"])  # the oldest step goes
    assert versions.changed_since(f"{1:032x}") is None
    assert versions.changed_since(f"{2:032x}") == {f"r{n}" for n in range(PATHS // 2)} | {"s"}


def etags(state: dict) -> dict[str, str]:
    return {path: info.etag for path, info in state.items()}


def apply(root: Path, step: tuple, contents: list[bytes]) -> list[str]:
    """Does ``step`` to the files under ``root``; the paths an event would name."""
    op, name, *rest = step
    path = root / name
    if op == "write":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents[rest[0]])
        return [name, name.split("/")[0]]  # the file, or the directory made for it
    if op == "delete":
        path.unlink(missing_ok=True)
        return [name]
    if op == "rmdir":
        shutil.rmtree(path, ignore_errors=True)
        return [name]
    target = root / rest[0]
    if path.is_file() and path != target:
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    return [name, rest[0], rest[0].split("/")[0]]
