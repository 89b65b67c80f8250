"""The CLI's pure parts: how values, tables and events render, and how `show` splits an
address from its selection. No sockets, no services."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from caterva.cli import render, rootsview, values
from caterva.cli.data import split_selection
from caterva.client import Cached, RootInfo
from caterva.protocol import printing
from caterva.protocol.dtypes import dtype_to_json
from caterva.protocol.metadata import DatasetInfo


def text_of(renderable, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def info(path="a/b.b2nd", kind="b2nd", dtype="<f4", **kw) -> DatasetInfo:
    body = dict(
        path=path,
        kind=kind,
        shape=[10, 20],
        dtype=dtype,
        chunks=[5, 10],
        blocks=[5, 5],
        nchunks=4,
        chunksize=200,
        nbytes=800,
        cbytes=200,
        cparams={"codec": 5, "clevel": 5, "filters": [0, 0, 0, 0, 0, 2]},
        vlmeta={"units": "m", "raw": {"__bytes__": "AAE="}},
        digests=["0" * 32] * 4,
        size=300,
    )
    body.update(kw)
    return DatasetInfo(**body)


@pytest.mark.parametrize(
    "dtype",
    [
        "<f4",
        "<f8",
        "|u1",
        "<i2",
        "<c8",
        "|b1",
        "<U16",
        "|S4",
        ">f4",
        "<M8[ns]",
        [("a", "<i2"), ("b", "<f4", (2,))],
        [("x", [("y", "<u2")])],
    ],
)
def test_dtype_text_matches_numpy_without_numpy(dtype):
    dt = np.dtype(dtype)
    want = {"<U16": "<U16", "|S4": "|S4", ">f4": ">f4"}.get(str(dtype), str(dt))
    if dt.names:
        want = (
            "{"
            + ", ".join(
                f"{n}: {render.dtype_text(dtype_to_json(dt.fields[n][0]))}" for n in dt.names
            )
            + "}"
        )
    assert render.dtype_text(dtype_to_json(dt)) == want


def test_subarray_dtype_text():
    assert render.dtype_text({"base": "<f4", "shape": [2]}) == "(2,)float32"
    assert render.dtype_text({"base": "<i8", "shape": [2, 3]}) == "(2, 3)int64"


def test_codec_shape_ratio():
    assert render.codec_text({"codec": 5, "clevel": 5, "filters": [0, 0, 0, 0, 0, 2]}) == (
        "ZSTD clevel 5, BITSHUFFLE"
    )
    assert (
        render.codec_text({"codec": 99, "clevel": 1, "filters": [1]})
        == "codec 99 clevel 1, SHUFFLE"
    )
    assert render.shape_text([3]) == "(3,)" and render.shape_text([]) == "()"
    assert render.ratio_text(800, 200) == "4.0x" and render.ratio_text(1, 0) == "-"


def test_roots_table_and_empty():
    roots = [RootInfo("demo", True, True, 3, "http://h:1"), RootInfo("old", False, False, 0)]
    lines = text_of(rootsview.roots_table(roots)).splitlines()
    assert lines[0].split() == ["root", "online", "learned", "followed", "datasets", "source"]
    assert lines[1].split() == ["demo", "yes", "-", "yes", "3", "http://h:1"]
    assert lines[2].split() == ["old", "no", "-", "no", "0", "-"]
    assert "no roots known yet" in text_of(rootsview.roots_table([]))


def test_roots_table_says_how_and_since_when_the_state_of_the_source_was_learned():
    def root(online: bool, learned: str, age: float) -> RootInfo:
        sources = [
            {"pub_id": "other", "learned": "broker", "since": 0.0},
            {"pub_id": "p1", "learned": learned, "since": 1_000_000.0 - age},
        ]
        return RootInfo("demo", online, True, 3, "http://h:1", sources=sources, source_id="p1")

    shown = [
        text_of(rootsview.roots_table([r], now=1_000_000.0), width=160).splitlines()[1].split()[1:5]
        for r in (root(True, "broker", 5), root(False, "probe", 125), root(True, "probe", 7200))
    ]
    assert shown == [
        ["yes", "broker", "5s", "ago"],
        ["no", "probe", "2m", "ago"],
        ["yes", "probe", "2h", "ago"],
    ]
    assert rootsview.age_text(3 * 86400) == "3d" and rootsview.age_text(-1) == "0s"


def test_roots_table_says_when_a_root_is_read_through_a_mirror():
    via = RootInfo(
        "demo", True, True, 3, "http://m:2", "o1", ["o1", "mirror-a"], source_id="mirror-a"
    )
    line = text_of(rootsview.roots_table([via])).splitlines()[1]
    assert line.split()[5:] == ["http://m:2", "via", "mirror-a", "(2", "hops)"]


def entry(path="a/b.b2nd", **kw) -> dict:
    """A dataset as `list --json` shows it (and the subscriber's listing sends it)."""
    body = info(path, **kw).to_dict()
    del body["proto"], body["digests"]
    return body


def test_dataset_lines_align_and_never_cut_a_path():
    long = "deep/" * 30 + "file.b2nd"
    columns = render.Columns()
    first = columns.lines([entry("x.b2nd"), entry("ü/日本.txt", kind="file")]).splitlines()
    assert first[0].split() == ["path", "kind", "shape", "dtype", "size"]
    assert first[1].split() == ["x.b2nd", "b2nd", "(10,", "20)", "float32", "300", "bytes"]
    assert first[2].split() == ["ü/日本.txt", "file", "-", "-", "300", "bytes"]
    assert cell_len(first[1]) == cell_len(first[2])  # wide characters count twice
    later = columns.lines([entry(long)]).splitlines()  # the next page: no header, wider
    assert len(later) == 1 and later[0].startswith(long + "  b2nd")


def test_dataset_lines_show_records_and_sizes():
    rec = entry(dtype={"names": ["a", "b"], "formats": ["<i4", "<f8"]}, size=0, cbytes=2000)
    assert render.dataset_cells(rec)[3:] == ("record (2 fields)", "2.0 kB")


def test_datasets_tree():
    out = text_of(
        render.datasets_tree("r", [entry("a/b.b2nd"), entry("a/c/d.b2nd"), entry("e.b2nd")])
    )
    assert out.splitlines()[0] == "r"
    assert "├── a/" in out and "└── d.b2nd" in out and "└── e.b2nd" in out


def test_info_view():
    out = text_of(render.info_view("r/a/b.b2nd", info(), Cached(1, 50)))
    fields = dict(
        line.split(None, 1) for line in out.splitlines() if line and not line[0].isspace()
    )
    assert fields["shape"] == "(10, 20)" and fields["dtype"] == "float32"
    assert (
        fields["chunks"] == "(5, 10), 4 in all" and fields["codec"] == "ZSTD clevel 5, BITSHUFFLE"
    )
    assert fields["size"] == "800 bytes uncompressed, 200 bytes stored (ratio 4.0x)"
    assert fields["cached"] == "1 of 4 chunks (50 bytes)"
    assert fields["vlmeta"] == 'units: "m"' and "raw: b'\\x00\\x01'" in out
    body = render.info_json("r/a/b.b2nd", info(), Cached(1, 50))
    assert body["cached"] == {"chunks": 1, "bytes": 50} and "proto" not in body
    json.dumps(body)


def test_event_lines():
    update = {"root": "r", "event": "update", "time": 0, "path": "a.b2nd", "chunks": [1, 2]}
    assert text_of(render.event_line(update)).split()[1:] == [
        "r",
        "update",
        "a.b2nd",
        "chunks",
        "1,",
        "2",
    ]
    layout = {"root": "r", "event": "update", "time": 0, "path": "a.b2nd", "chunks": None}
    assert "layout changed" in text_of(render.event_line(layout))
    source = {"root": "r", "event": "source", "time": 0, "online": False, "url": None, "new": 1}
    assert text_of(render.event_line(source)).split()[1:] == ["r", "source", "offline", "new=1"]


def test_json_values():
    rec = np.zeros(2, [("a", "<i2"), ("b", "<f4", (2,)), ("c", "S2")])
    rec["c"] = [b"hi", b"\xff\x00"]
    assert values.json_value(rec) == [
        {"a": 0, "b": [0.0, 0.0], "c": {"__bytes__": "aGk="}},
        {"a": 0, "b": [0.0, 0.0], "c": {"__bytes__": "/w=="}},
    ]
    assert values.json_value(np.array([1 + 2j], np.complex64)) == [[1.0, 2.0]]
    assert values.json_value(np.array([np.nan, np.inf, -np.inf])) == [
        "NaN",
        "Infinity",
        "-Infinity",
    ]
    assert values.json_value(np.float32(1.5)) == 1.5 and values.json_value(np.array(3)) == 3
    assert values.json_value(rec[0]) == {"a": 0, "b": [0.0, 0.0], "c": {"__bytes__": "aGk="}}


def test_bytes_as_text_or_hexdump():
    assert values.as_text("ünï\n".encode()) == "ünï\n"
    assert values.as_text("ab€".encode()[:-1]) == "ab"  # a preview cut inside a character
    assert values.as_text(bytes(range(256))) is None
    assert values.bytes_json(b"\x00\xff") == {"base64": "AP8="}
    dump = values.hexdump(b"ABC\x00" * 5, offset=0x20)
    assert dump.splitlines() == [
        "00000020  41 42 43 00 41 42 43 00 41 42 43 00 41 42 43 00  ABC.ABC.ABC.ABC.",
        "00000030  41 42 43 00" + " " * 38 + "ABC.",
    ]
    for plain in (False, True):
        out = view_text(values.bytes_view("t", b"hello", total=10, plain=plain))
        assert out.splitlines() == ["t", "hello", "... 5 more bytes"]


def view_text(view) -> str:
    """What a view prints: text as it is (stdout piped), a renderable as rich renders it."""
    return view if isinstance(view, str) else text_of(view)


@pytest.mark.parametrize("plain", [False, True])
def test_array_view_prints_numpys_text_under_a_title(plain):
    value = np.arange(6).reshape(2, 3)
    view = values.array_view("title", printing.text(value, 80), plain)
    assert isinstance(view, str) == plain
    assert view_text(view).splitlines() == ["title", "[[0 1 2]", " [3 4 5]]"]
    title = values.array_title("r/a", "0:2", None, dtype_to_json(value.dtype), value.shape)
    assert title == "r/a[0:2]  int64  shape (2, 3)"
    # text from a subscriber: what a terminal would act on shows escaped, lines stay lines
    shown = view_text(values.array_view("t", "[1\x1b[2J\n 2]", plain))
    assert shown.splitlines() == ["t", "[1\\x1b[2J", " 2]"]


@pytest.mark.parametrize(
    "target, expected",
    [
        ("r/a.b2nd", ("r/a.b2nd", None)),
        ("r/a.b2nd[0:10, ::2, -1]", ("r/a.b2nd", "0:10, ::2, -1")),
        (" r/a.b2nd[] ", ("r/a.b2nd", "")),
        ("r/a[1].b2nd[...]", ("r/a[1].b2nd", "...")),
        ("r/a[1].b2nd", ("r/a[1].b2nd", None)),
    ],
)
def test_split_selection(target, expected):
    assert split_selection(target) == expected


# --- names print as they are (property) -----------------------------------------------------

# what a dataset path may hold (caterva/protocol/names.py): anything printable or not, but no
# ASCII control character, no backslash and no MQTT wildcard
NAME_CHARS = st.characters(
    blacklist_characters="\\+#/", blacklist_categories=("Cs",), min_codepoint=0x20
)
NAMES = st.text(NAME_CHARS, min_size=1, max_size=40).filter(lambda n: n not in (".", ".."))
NAMES = NAMES.filter(lambda n: "\x7f" not in n) | st.sampled_from(
    ["[draft] notes:fire:.txt", "a:100:b.b2nd", "[red]x[/red].b2nd", ":smile: [/]", "\u202e.b2nd"]
)


def rich_text_of(renderable) -> str:
    """Printed by a console with rich markup and emoji codes on: the views must not need them
    off to print names as they are."""
    console = Console(record=True, width=400, color_system=None, markup=True, emoji=True)
    console.print(renderable)
    return console.export_text()


@given(name=NAMES)
@settings(max_examples=150, deadline=None)
def test_any_name_prints_literally_in_every_view(name):
    shown = render.literal(name)
    assert shown.isprintable()
    assert (
        shown == name
        if name.isprintable()
        else all(repr(c)[1:-1] in shown for c in name if not c.isprintable())
    )
    path = f"dir/{name}"
    infos = [info(path), info(f"{name}.txt", kind="file")]
    entries = [entry(path), entry(f"{name}.txt", kind="file")]
    assert f"dir/{shown}" in render.Columns().lines(entries)
    assert shown.rsplit("/", 1)[-1] in rich_text_of(render.datasets_tree("r", entries))
    assert f"r/dir/{shown}" in rich_text_of(render.info_view(f"r/{path}", infos[0], Cached(0, 0)))
    event = {"root": "r", "event": "create", "time": 0, "path": path, "chunks": []}
    assert f"dir/{shown}" in rich_text_of(render.event_line(event))
    assert (
        json.loads(json.dumps(render.info_json(f"r/{path}", infos[0], Cached(0, 0))))["address"]
        == f"r/{path}"
    )


def test_record_field_names_and_vlmeta_print_literally():
    rec = info(
        dtype={"names": ["[b]x[/b]", ":fire:"], "formats": ["<i4", "<f8"]},
        vlmeta={"[i]k[/i]": ":100:"},
    )
    out = rich_text_of(render.info_view("r/a.b2nd", rec, Cached(0, 0)))
    assert "{[b]x[/b]: int32, :fire:: float64}" in out and '[i]k[/i]: ":100:"' in out


def test_counts_are_plural_only_when_not_one():
    assert [render.plural(n, "dataset") for n in (0, 1, 2)] == [
        "0 datasets",
        "1 dataset",
        "2 datasets",
    ]


def test_tree_gives_plain_files_their_size_once():
    line = text_of(
        render.datasets_tree("r", [entry("x.txt", kind="file", nbytes=3738, size=3738)])
    ).splitlines()[1]
    assert line.split("x.txt", 1)[1].split() == ["3.7", "kB"]


def test_roots_table_shows_how_whole_a_pinned_root_is_only_when_one_is():
    whole = {"bytes": 3_500_000, "total": 3_500_000, "behind": 0, "problem": None}
    behind = {"bytes": 1_000_000, "total": 3_500_000, "behind": 12, "problem": "source_offline"}
    roots = [
        RootInfo("a", True, True, 3, "http://h:1", pinned=True, replica=whole),
        RootInfo("b", True, True, 3, "http://h:1", pinned=True, replica=behind),
        RootInfo("c", True, True, 3, "http://h:1"),
    ]
    lines = text_of(rootsview.roots_table(roots), width=160).splitlines()
    assert lines[0].split()[-1] == "pinned"
    # root, online, learned ("-": no since), followed, datasets, source, then pinned
    assert lines[1].split()[6:] == ["3.5", "MB", "of", "3.5", "MB"]
    assert " ".join(lines[2].split()[6:]) == "1.0 MB of 3.5 MB, behind 12 chunks (source_offline)"
    assert lines[3].split()[6:] == ["-"]
    assert "pinned" not in text_of(rootsview.roots_table(roots[2:]))
