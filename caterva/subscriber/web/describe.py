"""What the dataset page says besides its values: metadata, the chunk map, a plain file's
preview. Everything here returns plain strings for the templates, which escape them all; the
one exception is Markdown, rendered by markdown-it with raw HTML turned off (every ``<`` in the
file comes out as ``&lt;``) and its own link check (no ``javascript:`` URLs)."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from caterva import logs
from caterva.protocol.dtypes import dtype_from_json
from caterva.protocol.metadata import DatasetInfo
from caterva.subscriber.read import ReadPath
from caterva.subscriber.state import Dataset
from caterva.subscriber.web.window import select

MAP_CELLS = 512  # cells of the chunk map at most: a cell stands for several chunks beyond
TEXT_BYTES = 64 << 10  # bytes of a text file the page shows
IMAGE_BYTES = 8 << 20  # an image file larger than this is offered for download only
IMAGES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
MARKDOWN = (".md", ".markdown")


def _enum_name(kind: str, value: Any) -> str:
    import blosc2

    try:
        return getattr(blosc2, kind)(value).name
    except (ValueError, TypeError):
        return str(value)


def metadata(info: DatasetInfo) -> list[tuple[str, str]]:
    """(label, value) rows of a dataset's metadata."""
    dtype = dtype_from_json(info.dtype)
    cp = info.cparams
    filters = [_enum_name("Filter", f) for f in cp.get("filters", []) if f]
    rows = [
        ("kind", info.kind),
        ("shape", " × ".join(map(str, info.shape)) or "scalar"),
        ("dtype", str(dtype) if not dtype.names else f"structured, {dtype.itemsize} bytes"),
        ("chunks", " × ".join(map(str, info.chunks))),
        ("blocks", " × ".join(map(str, info.blocks))),
        ("chunk count", f"{info.nchunks:,}"),
        ("codec", f"{_enum_name('Codec', cp.get('codec'))}, level {cp.get('clevel', '?')}"),
        ("filters", ", ".join(filters) or "none"),
        ("size", f"{logs.size(info.nbytes)} ({logs.size(info.cbytes)} compressed)"),
        ("ratio", f"{info.nbytes / info.cbytes:.2f}×" if info.cbytes else "-"),
    ]
    if info.mtime:
        when = datetime.fromtimestamp(info.mtime, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        rows.append(("modified", when))
    return rows


def fields(info: DatasetInfo) -> list[tuple[str, str, int]]:
    """(name, dtype, offset) of each field of a structured dtype."""
    dtype = dtype_from_json(info.dtype)
    return [(name, str(dtype.fields[name][0]), dtype.fields[name][1]) for name in dtype.names or ()]


def vlmeta(info: DatasetInfo) -> list[tuple[str, str]]:
    """(key, value) of the variable-length metadata, each value as JSON text."""
    return [
        (str(k), v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str))
        for k, v in info.vlmeta.items()
    ]


@dataclass(frozen=True)
class Cell:
    first: int
    last: int
    held: int  # chunks of [first, last] in the cache

    @property
    def state(self) -> str:
        total = self.last - self.first + 1
        return "all" if self.held == total else ("some" if self.held else "none")


def chunk_map(ds: Dataset, present: dict[int, tuple[str, int]]) -> list[Cell]:
    """The chunk map: which chunks of this version the cache holds, MAP_CELLS cells at most."""
    n = ds.info.nchunks
    per = max(1, -(-n // MAP_CELLS))
    digests = ds.info.digests
    counts = [0] * -(-n // per)
    for i, (digest, _) in present.items():
        if i < n and digest == digests[i]:
            counts[i // per] += 1
    return [Cell(k * per, min((k + 1) * per, n) - 1, held) for k, held in enumerate(counts)]


def image_type(path: str) -> str | None:
    return IMAGES.get(posixpath.splitext(path)[1].lower())


@dataclass(frozen=True)
class Preview:
    kind: str  # "markdown", "text", "image" or "binary"
    body: str | Markup = ""
    truncated: bool = False


def render_markdown(text: str) -> Markup:
    from markdown_it import MarkdownIt

    # raw HTML off: a <script> in the file is text on the page, never an element
    return Markup(MarkdownIt("commonmark", {"html": False}).render(text))


async def preview(read: ReadPath, ds: Dataset) -> Preview:
    """A plain file as the page shows it, from its first TEXT_BYTES (its first chunks) only."""
    size = ds.info.size or ds.info.shape[0]
    if image_type(ds.path):
        return Preview("image" if size <= IMAGE_BYTES else "binary")
    head = (await select(read, ds, (slice(0, min(size, TEXT_BYTES)),))).tobytes()
    if b"\0" in head:
        return Preview("binary")
    text = head.decode("utf-8", errors="replace")
    truncated = size > TEXT_BYTES
    if posixpath.splitext(ds.path)[1].lower() in MARKDOWN:
        return Preview("markdown", render_markdown(text), truncated)
    return Preview("text", text, truncated)
