"""How `show` prints values: numpy arrays, records and plain bytes, as rich renderables, text
(``plain``: stdout piped) or JSON. Pure functions (no I/O, no client calls); numpy and rich are
imported by the functions that need them, never at module import.
"""

from __future__ import annotations

import base64
import math
from typing import TYPE_CHECKING, Any

from caterva.cli.render import dtype_text, literal, shape_text

if TYPE_CHECKING:
    from rich.console import RenderableType


def array_view(title: str, text: str, plain: bool) -> RenderableType:
    """numpy's text of an array (caterva.protocol.printing) under a one-line title."""
    # numpy escapes what a terminal would act on; text from a subscriber is made sure of
    body = "\n".join(literal(line) for line in text.split("\n"))
    return _titled(literal(title), [body], plain)


def _titled(title: str, lines: list[str], plain: bool, note: str = "") -> RenderableType:
    """``title`` (dim), the ``lines``, and a ``note`` (dim) when there is one."""
    if plain:
        return "\n".join([title, *lines, *([note] if note else [])])
    from rich.console import Group
    from rich.text import Text

    parts = [Text(title, style="dim"), *map(Text, lines)]
    return Group(*parts, *([Text(note, style="dim")] if note else []))


def array_title(
    address: str, sel: str | None, field: str | None, dtype: Any, shape: tuple[int, ...]
) -> str:
    """``dtype`` in its JSON form (caterva.protocol.dtypes)."""
    where = address + (f"[{sel}]" if sel is not None else "")
    if field is not None:
        where += f" field {field}"
    return f"{where}  {dtype_text(dtype)}  shape {shape_text(shape)}"


def numpy_dtype_json(dtype: Any) -> Any:
    """A numpy dtype in the JSON form DatasetInfo uses (caterva.protocol.dtypes)."""
    from caterva.protocol.dtypes import dtype_to_json

    return dtype_to_json(dtype)


def bytes_view(
    title: str, data: bytes, total: int, offset: int = 0, plain: bool = False
) -> RenderableType:
    """Text when the bytes read as UTF-8, else a hex dump (addresses from ``offset``); says
    what was left out."""
    text = as_text(data)
    body = text if text is not None else hexdump(data, offset)
    note = f"... {total - len(data):,} more bytes" if total > len(data) else ""
    return _titled(literal(title), [body], plain, note)


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
