"""How client commands look: pure functions from data to rich renderables or strings.

No I/O and no client calls here, so every view is testable with a recording Console. Values
(``show``) render in caterva/cli/values.py. Every name and user string goes into a ``Text``
through ``literal``: never parsed as rich markup or emoji codes, whatever console prints it.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from rich.filesize import decimal as size_text

# rich's renderables load in the views that make them (~10 ms): a command that prints a line
# (download, show) never needs them
if TYPE_CHECKING:  # the client (and httpx) load when a command runs, not for --help
    from rich.console import RenderableType
    from rich.text import Text

    from caterva.client import Cached
    from caterva.protocol.metadata import DatasetInfo

# blosc2.Codec and blosc2.Filter values, so `info` can name them without importing blosc2
CODECS = {
    0: "BLOSCLZ",
    1: "LZ4",
    2: "LZ4HC",
    4: "ZLIB",
    5: "ZSTD",
    32: "NDLZ",
    33: "ZFP_ACC",
    34: "ZFP_PREC",
    35: "ZFP_RATE",
    36: "OPENHTJ2K",
    37: "GROK",
    38: "OPENZL",
    39: "J2K",
    40: "HTJ2K",
}
FILTERS = {
    1: "SHUFFLE",
    2: "BITSHUFFLE",
    3: "DELTA",
    4: "TRUNC_PREC",
    32: "NDCELL",
    33: "NDMEAN",
    35: "BYTEDELTA",
    36: "INT_TRUNC",
}
KINDS = {"b2nd": "NDArray", "b2frame": "SChunk", "file": "plain file"}
_SCALAR = re.compile(r"([<>|=]?)([fiucbMm])(\d+)(\[\w+\])?")
_NAMES = {"f": "float", "i": "int", "u": "uint", "c": "complex", "M": "datetime", "m": "timedelta"}


# --- small values ---------------------------------------------------------------------------


def literal(text: Any) -> str:
    """A user string as it is, except what a terminal would act on or hide (control and other
    unprintable characters), shown as its Python escape (\\n, \\x1b, \\u202e)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def plain(text: Any, style: str = "") -> Text:
    """``literal(text)`` as a Text: no markup, no emoji codes, on any console."""
    from rich.text import Text

    return Text(literal(text), style=style)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def dtype_text(dtype: Any) -> str:
    """A dtype's JSON form (caterva.protocol.dtypes) as numpy would print it, without numpy."""
    if isinstance(dtype, dict) and "base" in dtype:
        return (
            f"({', '.join(map(str, dtype['shape']))}{',' if len(dtype['shape']) == 1 else ''})"
            f"{dtype_text(dtype['base'])}"
        )
    if isinstance(dtype, dict) and "names" in dtype:
        fields = ", ".join(
            f"{n}: {dtype_text(f)}" for n, f in zip(dtype["names"], dtype["formats"], strict=True)
        )
        return "{" + fields + "}"
    m = _SCALAR.fullmatch(str(dtype))
    if m and m.group(1) in ("<", "|", "=", ""):
        kind, size, unit = m.group(2), int(m.group(3)), m.group(4) or ""
        if kind == "b":
            return "bool"
        return f"{_NAMES[kind]}{8 * size}{unit}"
    return str(dtype)


def shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def codec_text(cparams: dict[str, Any]) -> str:
    codec = cparams.get("codec")
    name = CODECS.get(codec, f"codec {codec}") if codec is not None else "?"
    filters = [FILTERS.get(f, f"filter {f}") for f in cparams.get("filters", []) if f]
    parts = [f"{name} clevel {cparams.get('clevel', '?')}", *filters]
    return ", ".join(parts)


def ratio_text(nbytes: int, cbytes: int) -> str:
    return f"{nbytes / cbytes:.1f}x" if cbytes else "-"


def vlmeta_value(value: Any) -> str:
    """One vlmeta value, compact; bytes (tagged {"__bytes__": b64} on the wire) as b'...'."""
    if isinstance(value, dict) and set(value) == {"__bytes__"}:
        raw = base64.b64decode(value["__bytes__"])
        return repr(raw[:48]) + ("..." if len(raw) > 48 else "")
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."


# --- datasets ---------------------------------------------------------------------


class Columns:
    """`caterva list` as aligned plain lines, written a page at a time as pages arrive: each
    column as wide as its widest cell so far (widths only grow), two spaces apart. A path is
    what users copy into the next command: never cut short."""

    HEADER = ("path", "kind", "shape", "dtype", "size")

    def __init__(self) -> None:
        self.widths = [len(h) for h in self.HEADER]
        self.started = False

    def lines(self, entries: Iterable[dict[str, Any]]) -> str:
        """The lines of some datasets (each a `list --json` entry), the header first."""
        rows = [dataset_cells(e) for e in entries]
        if not self.started:
            rows.insert(0, self.HEADER)
            self.started = True
        from rich.cells import cell_len

        sized = [(row, [len(c) if c.isascii() else cell_len(c) for c in row]) for row in rows]
        for _, cells in sized:
            self.widths = [max(w, n) for w, n in zip(self.widths, cells)]
        return "".join(self._line(row, cells) for row, cells in sized)

    def _line(self, row: Sequence[str], cells: Sequence[int]) -> str:
        """Left-aligned cells, the last (a size) right-aligned."""
        pad = [w - n for w, n in zip(self.widths, cells)]
        left = [c + " " * p for c, p in zip(row[:-1], pad)]
        return "  ".join([*left, " " * pad[-1] + row[-1]]) + "\n"


def dataset_cells(entry: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """path, kind, shape, dtype and size of a `list --json` entry, as printed."""
    kind = str(entry.get("kind", "?"))
    return (
        literal(entry.get("path", "?")),
        literal(kind),
        shape_text(entry.get("shape") or ()) if kind == "b2nd" else "-",
        literal(_dtype_or_dash(entry)),
        size_text(entry.get("size") or entry.get("cbytes") or 0),
    )


def datasets_tree(root: str, entries: Iterable[dict[str, Any]]) -> RenderableType:
    from rich.tree import Tree

    tree = Tree(plain(root, style="bold"))
    dirs: dict[tuple[str, ...], Tree] = {(): tree}
    for entry in sorted(entries, key=lambda e: PurePosixPath(e["path"]).parts):
        parts = PurePosixPath(entry["path"]).parts
        for depth in range(1, len(parts)):
            key = parts[:depth]
            if key not in dirs:
                dirs[key] = dirs[key[:-1]].add(plain(key[-1] + "/", style="bold blue"))
        _, kind, shape, dtype, size = dataset_cells(entry)
        label = plain(parts[-1])
        if kind == "b2nd":
            label.append(f"  {shape} {dtype}", style="dim")
        label.append(f"  {size}", style="dim")
        dirs[parts[:-1]].add(label)
    return tree


def _dtype_or_dash(entry: dict[str, Any]) -> str:
    dtype = entry.get("dtype")
    if entry.get("kind") != "b2nd":
        return "-"
    if isinstance(dtype, dict) and "names" in dtype:
        return f"record ({len(dtype['names'])} fields)"
    return _scalar_text(dtype) if isinstance(dtype, str) else dtype_text(dtype)


@functools.lru_cache(maxsize=256)
def _scalar_text(dtype: str) -> str:
    """dtype_text of a scalar dtype, once for the many datasets of a listing that share it."""
    return dtype_text(dtype)


def info_view(address: str, info: DatasetInfo, cached: Cached) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("dataset", plain(address))
    grid.add_row("kind", f"{info.kind} ({KINDS.get(info.kind, '?')})")
    grid.add_row("shape", shape_text(info.shape))
    grid.add_row("dtype", plain(dtype_text(info.dtype)))
    grid.add_row("chunks", f"{shape_text(info.chunks)}, {info.nchunks} in all")
    grid.add_row("blocks", shape_text(info.blocks))
    grid.add_row("codec", codec_text(info.cparams))
    grid.add_row(
        "size",
        f"{size_text(info.nbytes)} uncompressed, {size_text(info.cbytes)} stored "
        f"(ratio {ratio_text(info.nbytes, info.cbytes)})",
    )
    grid.add_row(
        "cached",
        f"{cached.chunks} of {info.nchunks} chunks ({size_text(cached.bytes)})",
    )
    if info.vlmeta:
        grid.add_row(
            "vlmeta",
            Text("\n").join(plain(f"{k}: {vlmeta_value(v)}") for k, v in info.vlmeta.items()),
        )
    return grid


def info_json(address: str, info: DatasetInfo, cached: Cached) -> dict[str, Any]:
    body = info.to_dict()
    body.pop("proto", None)
    return {"address": address, **body, "cached": {"chunks": cached.chunks, "bytes": cached.bytes}}


# --- events ---------------------------------------------------------------------------------


def event_line(event: dict[str, Any]) -> Text:
    when = event.get("time")
    stamp = (
        time.strftime("%H:%M:%S", time.localtime(when))
        if isinstance(when, (int, float))
        else "--:--:--"
    )
    from rich.text import Text

    line = Text(stamp + "  ", style="dim")
    line.append(literal(event.get("root", "?")), style="bold")
    line.append(f"  {literal(event.get('event', '?'))}", style="cyan")
    if event.get("path"):
        line.append(f"  {literal(event['path'])}")
    chunks = event.get("chunks")
    if isinstance(chunks, list):
        shown = ", ".join(map(str, chunks[:12])) + (", ..." if len(chunks) > 12 else "")
        line.append(f"  chunks {shown}" if chunks else "  no chunk changed", style="dim")
    elif event.get("event") == "update":
        line.append("  layout changed", style="dim")
    if "datasets" in event:
        line.append(f"  {event['datasets']} datasets", style="dim")
    if "online" in event:  # a source came or went
        line.append(
            "  online" if event["online"] else "  offline",
            style="green" if event["online"] else "red",
        )
    shown = {"time", "root", "event", "path", "chunks", "datasets", "online", "etag"}
    for key, value in event.items():  # newer event kinds: say what they carry
        if key not in shown and isinstance(value, (str, int, float, bool)):
            shown_value = literal(value if key == "url" else f"{key}={value}")
            line.append(f"  {shown_value}", style="dim")
    return line


def download_progress(console):
    """A progress bar for downloads: bytes done and total, rate, time left."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
