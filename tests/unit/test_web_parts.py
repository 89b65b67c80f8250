"""The web page's pure parts: the PNG encoder and colormap, the paged listing over a real
subscriber state (SQLite), the view's keys, and Markdown that cannot carry HTML."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from caterva.errors import BadSelection, InvalidName
from caterva.protocol.metadata import DatasetInfo
from caterva.subscriber.state import State
from caterva.subscriber.web import image, listing
from caterva.subscriber.web.describe import render_markdown
from caterva.subscriber.web.window import IMAGE_SIDE, View, cell


def decode_png(data: bytes) -> np.ndarray:
    """(h, w, 3) of an 8-bit RGB PNG with filter 0 rows, checking every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, {}
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = body
        at += 12 + length
    width, height, depth, colour, *_ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, -1)
    assert not rows[:, 0].any()  # filter type 0 on every row
    return rows[:, 1:].reshape(height, width, 3)


def test_a_png_holds_the_plane_pixel_for_pixel():
    plane = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)
    rgb = image.colour(plane)
    assert np.array_equal(decode_png(image.encode_png(rgb)), rgb)
    assert rgb.shape == (30, 40, 3)


def test_the_colormap_runs_dark_to_light_evenly():
    lightness = image._to_oklab(image.TABLE.astype(float))[:, 0]
    assert image.TABLE.shape == (256, 3)
    assert np.all(np.diff(lightness) > -1e-3)  # monotone, up to 8-bit rounding
    assert lightness[-1] - lightness[0] > 0.5


def test_scaling_ignores_outliers_and_greys_what_is_not_finite():
    plane = np.tile(np.linspace(0, 1, 100), (10, 1))
    plane[0, 0] = 1e12  # a hot pixel
    plane[1, 1] = np.nan
    rgb = image.colour(plane)
    assert tuple(rgb[1, 1]) == image.NOT_FINITE
    middle = rgb[5, 50]
    assert tuple(middle) not in (tuple(image.TABLE[0]), tuple(image.TABLE[-1]))  # not flattened
    assert image.colour(np.zeros((2, 2))).shape == (2, 2, 3)  # flat: no division by zero


def test_an_image_needs_a_non_empty_numeric_plane():
    with pytest.raises(BadSelection):
        image.colour(np.zeros((2, 2), dtype="U3"))
    with pytest.raises(BadSelection):
        image.encode_png(np.zeros((0, 4, 3), np.uint8))


def info(path: str, shape=(10,), dtype="<f8", chunks=(5,)) -> DatasetInfo:
    nchunks = int(np.prod([-(-s // c) for s, c in zip(shape, chunks)]))
    return DatasetInfo(
        path=path,
        kind="b2nd",
        shape=list(shape),
        dtype=dtype,
        chunks=list(chunks),
        blocks=list(chunks),
        nchunks=nchunks,
        chunksize=8 * int(np.prod(chunks)),
        nbytes=8 * int(np.prod(shape)),
        cbytes=100,
        cparams={},
        vlmeta={},
        digests=["0" * 32] * nchunks,
    )


@pytest.fixture
def state(tmp_path):
    state = State(tmp_path / "state.db")
    paths = (
        [f"flat/{i:04d}.b2nd" for i in range(120)]
        + [f"deep/{d}/x.b2nd" for d in "abc"]
        + ["deep.txt", "deep0", "top.b2nd", "a b/<c>.b2nd"]
    )
    state.follow("r", 0.0)
    state.put_datasets("r", [info(p) for p in paths])
    yield state, paths
    state.close()


def every_page(fetch) -> list[listing.Entry]:
    entries, after = [], ""
    while True:
        page = fetch(after)
        entries += page.entries
        assert len(page.entries) <= listing.PAGE
        if page.after is None:
            return entries
        after = page.after


def test_a_folder_lists_its_children_once_each_in_pages(state):
    state, paths = state
    top = every_page(lambda a: listing.folder(state.db, "r", "", a))
    assert [e.name for e in top] == ["a b/", "deep.txt", "deep/", "deep0", "flat/", "top.b2nd"]
    assert [e.folder for e in top] == [True, False, True, False, True, False]
    flat = every_page(lambda a: listing.folder(state.db, "r", "flat/", a))
    assert [e.path for e in flat] == sorted(p for p in paths if p.startswith("flat/"))
    deep = every_page(lambda a: listing.folder(state.db, "r", "deep/", a))
    assert [(e.name, e.path) for e in deep] == [(f"{d}/", f"deep/{d}/") for d in "abc"]
    assert listing.folder(state.db, "other", "", "").entries == []


def test_a_search_is_a_glob_or_a_word_paged(state):
    state, paths = state
    found = every_page(lambda a: listing.search(state, "r", "00", a))
    assert [e.path for e in found] == sorted(p for p in paths if "00" in p)
    assert len(found) > listing.PAGE  # it did page
    found = every_page(lambda a: listing.search(state, "r", "deep/*/x.b2nd", a))
    assert [e.path for e in found] == [f"deep/{d}/x.b2nd" for d in "abc"]
    assert listing.search(state, "r", "<c>", "").entries[0].path == "a b/<c>.b2nd"


def test_a_view_reads_its_window_and_its_plane():
    cube = info("c", shape=(4, 30, 2000), chunks=(1, 10, 10))
    view = View.parse(cube, {"i0": "2", "r0": "25", "c0": "-3"})
    assert (view.rows, view.cols, view.at, view.r0, view.c0) == (1, 2, (2, 0, 0), 25, 0)
    assert view.window_key() == (2, slice(25, 45), slice(0, 10))
    assert view.steps() == (1, -(-2000 // IMAGE_SIDE))
    assert view.pages() == {"up": 5, "down": None, "left": None, "right": 10}
    swapped = View.parse(cube, {"rows": "2", "cols": "0", "i1": "7"})
    assert swapped.window_key() == (slice(0, 10), 7, slice(0, 20))
    assert swapped.oriented(np.zeros((10, 20))).shape == (20, 10)
    assert "i1=7" in swapped.query() and "i0" not in swapped.query()
    for bad in ({"rows": "1", "cols": "1"}, {"i0": "x"}, {"field": "nope"}):
        with pytest.raises(BadSelection):
            View.parse(cube, bad)


def test_values_show_exactly():
    assert cell(0.1) == "0.1" and float(cell(1 / 3)) == 1 / 3
    assert cell((1, 2.5)) == "(1, 2.5)"


def test_markdown_never_carries_html_or_script_links():
    html = str(  # a Markup's `in` would escape the needle first
        render_markdown(
            "# t\n<script>alert(1)</script>\n\n<img src=x onerror=alert(2)> [a](javascript:x())"
        )
    )
    assert "<script" not in html and "<img" not in html and "href" not in html
    assert "&lt;script&gt;" in html and "<h1>t</h1>" in html


def test_a_search_is_a_pattern_as_caterva_list_takes_it(state):
    """One pattern language for the page and the API: `*` stays within a segment there too,
    and a pattern pointing outside the root is refused as it is by the list route."""
    state, paths = state
    found = every_page(lambda a: listing.search(state, "r", "deep/*", a))
    assert [e.path for e in found] == [
        p for p in sorted(paths) if p.count("/") == 1 and p.startswith("deep/")
    ]
    with pytest.raises(InvalidName):
        listing.search(state, "r", "../*.b2nd", "")
