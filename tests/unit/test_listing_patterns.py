"""Listing a root by prefix or glob (caterva/subscriber/listing.py): how a pattern becomes an
index range, a SQLite GLOB and an exact match, the cursor's form, and, against a real SQLite
state, that paging through any pattern gives exactly the matching paths in order."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caterva.errors import BadCursor, InvalidName
from caterva.protocol.metadata import DatasetInfo
from caterva.subscriber import listing
from caterva.subscriber.state import State

MATCHES = [
    # pattern, paths it matches, paths it does not
    ("stations/2024-", ["stations/2024-01.b2nd", "stations/2024-01/x.b2nd"], ["stations/2023"]),
    ("stations/", ["stations/a", "stations/b/c"], ["stations", "stationsX/a"]),
    ("stations/2024-*", ["stations/2024-01.b2nd", "stations/2024-"], ["stations/2024-01/x"]),
    ("*.b2nd", ["a.b2nd", ".b2nd"], ["d/a.b2nd", "a.b2nd.txt"]),
    ("d/?.txt", ["d/a.txt", "d/*.txt"], ["d/ab.txt", "d//.txt", "d/.txt"]),
    ("**/*.b2nd", ["a.b2nd", "d/a.b2nd", "d/e/a.b2nd"], ["a.b2nd/x", "d/a.b2ndx"]),
    ("stations/**", ["stations/a", "stations/a/b/c"], ["stations", "other/a"]),
    ("a/**/z", ["a/z", "a/b/z", "a/b/c/z"], ["a/bz", "az"]),
    ("a**z", ["az", "a/b/z", "abz"], ["a/b/zz/"]),
    ("[draft] *", ["[draft] notes.txt"], ["d", "draft notes"]),
    ("x.b2nd", ["x.b2nd", "x.b2nd.tmp"], ["xyb2nd"]),  # a prefix: "." is no wildcard
]


@pytest.mark.parametrize("pattern, yes, no", MATCHES, ids=[m[0] for m in MATCHES])
def test_pattern_semantics(pattern, yes, no):
    match = listing.parse(pattern)
    for path in yes:
        assert _selected(match, path), (pattern, path)
    for path in no:
        assert not _selected(match, path), (pattern, path)


def _selected(match: listing.Match, path: str) -> bool:
    """What the query keeps: the index range and the exact match."""
    in_range = path >= match.lo and (match.hi is None or path < match.hi)
    return in_range and match(path)


def test_a_pattern_becomes_a_range_and_a_glob():
    assert listing.parse("") == listing.Match("", None)
    assert listing.parse("stations/2024-") == listing.Match("stations/2024-", "stations/2024.")
    m = listing.parse("stations/2024-*/[x]?.b2nd")
    assert (m.lo, m.hi, m.glob) == (
        "stations/2024-",
        "stations/2024.",
        "stations/2024-*/[[]x]?.b2nd",
    )
    assert listing.parse("**/a/**/*").glob == "*a/*"  # runs of wildcards: one GLOB star


def test_after_prefix_bounds_every_string_with_the_prefix():
    assert listing.after_prefix("") is None
    assert listing.after_prefix("ab") == "ac"
    assert listing.after_prefix("a\U0010ffff") == "b"
    assert listing.after_prefix("\U0010ffff") is None
    assert listing.after_prefix("a\ud7ff") == "a\ue000"  # surrogates are skipped


@pytest.mark.parametrize(
    "pattern",
    [
        "/etc",
        "../x",
        "a/../b",
        "a/..",
        "..",
        "./a",
        "a//b",
        "a\x00b",
        "a\\b",
        "a\nb",
        "x" * 1025,
        "/",
        "**/../x",
        "a\ud800",
        "c#",
        "c+",
    ],
)
def test_patterns_outside_the_root_are_refused(pattern):
    with pytest.raises(InvalidName, match="invalid pattern"):
        listing.parse(pattern)


def test_cursor_round_trips_and_refuses_anything_else():
    for path in ("a", "d/é/ü 1.b2nd", "x" * 1024, "☃/[draft]*?.txt"):
        cursor = listing.encode_cursor(path)
        assert cursor.isascii() and "=" not in cursor
        assert listing.decode_cursor(cursor) == path
    forged = [
        "",
        "!!!!",
        "é",
        "MTpk=x",
        listing.encode_cursor("a")[:-1] + "*",
        listing.encode_cursor("../x"),  # a path no dataset can have
        listing.encode_cursor("x" * 1025),
        "QQ",  # base64 of "A": no version tag
        "A" * 10_000,
    ]
    for cursor in forged:
        with pytest.raises(BadCursor):
            listing.decode_cursor(cursor)


# --- against a real state ----------------------------------------------------------------------


def info(path: str) -> DatasetInfo:
    return DatasetInfo(
        path=path,
        kind="file",
        shape=[3],
        dtype="|u1",
        chunks=[3],
        blocks=[3],
        nchunks=1,
        chunksize=3,
        nbytes=3,
        cbytes=40,
        cparams={},
        vlmeta={},
        digests=["0" * 32],
    )


def listed(state: State, pattern: str, limit: int) -> tuple[list[str], int]:
    """Every path a listing gives, page by page as a client goes; and how many pages."""

    async def one_page(after: str) -> tuple[list[dict], str | None]:
        match = listing.parse(pattern)
        end, more = listing.page_end(state, "r", match, limit, after)
        body = b"".join(
            [p async for p in listing.lines(state, "r", match, after, end, lambda: True)]
        )
        entries = [json.loads(line) for line in body.splitlines()]
        assert len(entries) <= limit
        return entries, listing.encode_cursor(end) if more else None

    paths, cursor, pages = [], None, 0
    while True:
        entries, cursor = asyncio.run(one_page(listing.decode_cursor(cursor) if cursor else ""))
        assert all("digests" not in e and "proto" not in e for e in entries)
        paths += [e["path"] for e in entries]
        pages += 1
        if cursor is None:
            return paths, pages


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setattr(listing, "SCAN", 4)  # many queries a page, and pages across them
    state = State(tmp_path / "state.db")
    state.follow("r", 0)
    state.follow("other", 0)
    paths = [f"d{i % 3}/f{i:02d}.txt" for i in range(20)] + ["a.b2nd", "d1/e/g.b2nd", "z"]
    state.put_datasets("r", [info(p) for p in paths])
    state.put_datasets("other", [info("d0/x.txt")])  # never in r's listing
    yield state, sorted(paths)
    state.close()


def test_pages_cover_the_listing_once_in_order(state):
    state, paths = state
    for limit in (1, 3, 4, 5, 100):
        got, pages = listed(state, "", limit)
        assert got == paths
        assert pages == max(1, -(-len(paths) // limit))
    assert listed(state, "d1/", 2)[0] == [p for p in paths if p.startswith("d1/")]
    assert listed(state, "d?/*.txt", 3)[0] == [p for p in paths if p.endswith(".txt")]
    assert listed(state, "**/*.b2nd", 1)[0] == ["a.b2nd", "d1/e/g.b2nd"]
    assert listed(state, "nothing*", 5) == ([], 1)


def test_a_page_holds_the_summaries_as_list_json_shows_them(state):
    state, _ = state
    ((path, summary),) = state.dataset_rows("r", "", "a", "b", None, 10, True)
    want = info("a.b2nd").to_dict()
    del want["proto"], want["digests"]
    assert (path, json.loads(summary)) == ("a.b2nd", want)


ALPHABET = "ab/.*?["


def reference(pattern: str, path: str) -> bool:
    """The documented rules, written as a plain recursive matcher (no regex, no GLOB)."""
    if not any(w in pattern for w in "*?"):
        return path.startswith(pattern)

    def match(p: str, s: str) -> bool:
        if not p:
            return not s
        if p.startswith("**/"):
            return match(p[3:], s) or any(
                match(p[3:], s[i + 1 :]) for i, c in enumerate(s) if c == "/"
            )
        if p.startswith("**"):
            return any(match(p[2:], s[i:]) for i in range(len(s) + 1))
        if p[0] == "*":
            return any(match(p[1:], s[i:]) for i in range(len(s) + 1) if "/" not in s[:i])
        if p[0] == "?":
            return bool(s) and s[0] != "/" and match(p[1:], s[1:])
        return bool(s) and s[0] == p[0] and match(p[1:], s[1:])

    return match(pattern, path)


def valid_path(path: str) -> bool:
    return all(seg not in ("", ".", "..") for seg in path.split("/"))


@given(
    paths=st.sets(st.text("ab/.*?[", min_size=1, max_size=7).filter(valid_path), max_size=25),
    pattern=st.text(ALPHABET, max_size=7),
    limit=st.integers(1, 6),
)
@settings(max_examples=150, deadline=None)
def test_any_pattern_lists_what_the_rules_say(paths, pattern, limit):
    try:
        listing.parse(pattern)
    except InvalidName:
        return  # refused patterns are tested above
    scan, listing.SCAN = listing.SCAN, 2  # no fixture: hypothesis runs many examples in one
    try:
        with tempfile.TemporaryDirectory() as tmp:
            state = State(Path(tmp) / "state.db")
            state.follow("r", 0)
            state.put_datasets("r", [info(p) for p in paths])
            got = listed(state, pattern, limit)[0]
            state.close()
    finally:
        listing.SCAN = scan
    assert got == sorted(p for p in paths if reference(pattern, p))
