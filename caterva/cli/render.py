"""How client commands look: pure functions from data to rich renderables or strings.

No I/O and no client calls here, so every view is testable with a recording Console. numpy
is imported only by the functions that format arrays (``show``), never at module import: the
catalog commands (roots, list, info, watch) must start without it.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from rich.console import Group, RenderableType
from rich.filesize import decimal as size_text
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

if TYPE_CHECKING:  # the client (and httpx) load when a command runs, not for --help
    from caterva.client.base import Cached, RootInfo
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


def dtype_text(dtype: Any) -> str:
    """A dtype's JSON form (layout.dtype_to_json) as numpy would print it, without numpy."""
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


# --- roots and datasets ---------------------------------------------------------------------


def roots_table(roots: Sequence[RootInfo]) -> RenderableType:
    if not roots:
        return Text("no roots known yet: is a publisher running on the subscriber's broker?")
    table = Table(box=None, header_style="bold")
    for column in ("root", "online", "followed", "datasets", "source"):
        table.add_column(column, justify="right" if column == "datasets" else "left")
    for r in roots:
        table.add_row(
            Text(r.name, style="bold"),
            Text("yes", style="green") if r.online else Text("no", style="red"),
            "yes" if r.followed else "no",
            str(r.datasets),
            source_text(r),
        )
    return table


def source_text(root: RootInfo) -> str:
    """Where a root is read from: the origin's URL, or "URL via MIRROR (N hops)"."""
    if not root.source:
        return "-"
    if len(root.hops) < 2 or not root.source_id:
        return root.source
    return f"{root.source} via {root.source_id} ({len(root.hops)} hops)"


def dataset_summary(info: DatasetInfo) -> dict[str, Any]:
    """What `list --json` says of a dataset: its info without the per-chunk digests."""
    body = info.to_dict()
    body.pop("proto", None)
    body.pop("digests", None)
    return body


def datasets_table(root: str, infos: Sequence[DatasetInfo]) -> RenderableType:
    if not infos:
        return Text(f"{root} has no datasets")
    table = Table(box=None, header_style="bold")
    # a path is what users copy into the next command: never cut it short
    table.add_column("path", min_width=max(len(i.path) for i in infos), overflow="fold")
    for column in ("kind", "shape", "dtype", "size"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for info in infos:
        table.add_row(
            info.path,
            info.kind,
            shape_text(info.shape) if info.kind == "b2nd" else "-",
            _dtype_or_dash(info, short=True),
            size_text(info.size or info.cbytes),
        )
    return table


def datasets_tree(root: str, infos: Iterable[DatasetInfo]) -> RenderableType:
    tree = Tree(Text(root, style="bold"))
    dirs: dict[tuple[str, ...], Tree] = {(): tree}
    for info in sorted(infos, key=lambda i: PurePosixPath(i.path).parts):
        parts = PurePosixPath(info.path).parts
        for depth in range(1, len(parts)):
            key = parts[:depth]
            if key not in dirs:
                dirs[key] = dirs[key[:-1]].add(Text(key[-1] + "/", style="bold blue"))
        label = Text(parts[-1])
        label.append(f"  {_shape_or_bytes(info)} {_dtype_or_dash(info, short=True)}  ", style="dim")
        label.append(size_text(info.size or info.cbytes), style="dim")
        dirs[parts[:-1]].add(label)
    return tree


def _shape_or_bytes(info: DatasetInfo) -> str:
    return shape_text(info.shape) if info.kind == "b2nd" else f"{info.nbytes:,} bytes"


def _dtype_or_dash(info: DatasetInfo, short: bool = False) -> str:
    if info.kind != "b2nd":
        return "-"
    if short and isinstance(info.dtype, dict) and "names" in info.dtype:
        return f"record ({len(info.dtype['names'])} fields)"
    return dtype_text(info.dtype)


def info_view(address: str, info: DatasetInfo, cached: Cached) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("dataset", address)
    grid.add_row("kind", f"{info.kind} ({KINDS.get(info.kind, '?')})")
    grid.add_row("shape", shape_text(info.shape))
    grid.add_row("dtype", dtype_text(info.dtype))
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
        grid.add_row("vlmeta", "\n".join(f"{k}: {vlmeta_value(v)}" for k, v in info.vlmeta.items()))
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
    line = Text(stamp + "  ", style="dim")
    line.append(str(event.get("root", "?")), style="bold")
    line.append(f"  {event.get('event', '?')}", style="cyan")
    if event.get("path"):
        line.append(f"  {event['path']}")
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
            line.append(f"  {value}" if key == "url" else f"  {key}={value}", style="dim")
    return line


# --- values (show) --------------------------------------------------------------------------


def array_view(title: str, value: Any, width: int) -> RenderableType:
    """numpy's own printing (summarised when large) under a one-line title."""
    import numpy as np

    header = Text(title, style="dim")
    with np.printoptions(linewidth=max(width, 40), threshold=1000, edgeitems=4):
        body = np.array2string(np.asarray(value))
    return Group(header, Text(body))


def array_title(address: str, sel: str | None, field: str | None, value: Any) -> str:
    import numpy as np

    where = address + (f"[{sel}]" if sel is not None else "")
    if field is not None:
        where += f" field {field}"
    dtype = dtype_text(numpy_dtype_json(np.asarray(value).dtype))
    return f"{where}  {dtype}  shape {shape_text(np.shape(value))}"


def numpy_dtype_json(dtype: Any) -> Any:
    """A numpy dtype in the JSON form DatasetInfo uses (layout.dtype_to_json)."""
    from caterva.protocol.dtypes import dtype_to_json

    return dtype_to_json(dtype)


def bytes_view(title: str, data: bytes, total: int, offset: int = 0) -> RenderableType:
    """Text when the bytes read as UTF-8, else a hex dump (addresses from ``offset``); says
    what was left out."""
    header = Text(title, style="dim")
    text = as_text(data)
    body = Text(text) if text is not None else Text(hexdump(data, offset))
    parts: list[RenderableType] = [header, body]
    if total > len(data):
        parts.append(Text(f"... {total - len(data):,} more bytes", style="dim"))
    return Group(*parts)


def as_text(data: bytes) -> str | None:
    for cut in range(4):  # a preview may end inside a multi-byte character
        try:
            text = data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        printable = sum(c.isprintable() or c in "\n\r\t" for c in text)
        return text if printable >= 0.95 * max(len(text), 1) else None
    return None


def bytes_json(data: bytes) -> dict[str, str]:
    """Bytes for --json: {"text": ...} when they read as UTF-8 text, else {"base64": ...}."""
    text = as_text(data)
    return {"text": text} if text is not None else {"base64": base64.b64encode(data).decode()}


def hexdump(data: bytes, offset: int = 0, width: int = 16) -> str:
    lines = []
    for at in range(0, len(data), width):
        row = data[at : at + width]
        hexes = " ".join(f"{b:02x}" for b in row)
        chars = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{offset + at:08x}  {hexes:<{width * 3 - 1}}  {chars}")
    return "\n".join(lines)


def json_value(value: Any) -> Any:
    """numpy values -> JSON: arrays as nested lists, records as objects, complex as
    [real, imag], bytes as {"__bytes__": base64}, non-finite floats as "NaN"/"Infinity"."""
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.dtype.names is not None:
            return [json_value(v) for v in value] if value.ndim else json_value(value[()])
        return json_value(value.tolist())
    if isinstance(value, np.void) and value.dtype.names is not None:
        return {name: json_value(value[name]) for name in value.dtype.names}
    if isinstance(value, np.generic):
        return json_value(value.item())
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, complex):
        return [json_value(value.real), json_value(value.imag)]
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


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
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
