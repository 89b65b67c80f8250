"""How ``caterva roots`` looks: the table of roots, their sources, how each source's state was
learned, and how whole a pinned root is held. Pure functions, like caterva/cli/render.py."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import RenderableType
from rich.filesize import decimal as size_text
from rich.table import Table
from rich.text import Text

from caterva.cli.render import plain, plural

if TYPE_CHECKING:
    from caterva.client import RootInfo


def roots_table(roots: Sequence[RootInfo], now: float | None = None) -> RenderableType:
    if not roots:
        return Text("no roots known yet: is a publisher running on the subscriber's broker?")
    now = time.time() if now is None else now
    table = Table(box=None, header_style="bold")
    pins = any(r.pinned for r in roots)  # the column only where pins are used
    columns = ("root", "online", "learned", "followed", "datasets", "source", *["pinned"] * pins)
    for column in columns:
        table.add_column(column, justify="right" if column == "datasets" else "left")
    for r in roots:
        table.add_row(
            plain(r.name, style="bold"),
            Text("yes", style="green") if r.online else Text("no", style="red"),
            plain(learned_text(r, now), style="dim"),
            "yes" if r.followed else "no",
            str(r.datasets),
            plain(source_text(r)),
            *([replica_text(r)] * pins),
        )
    return table


def learned_text(root: RootInfo, now: float) -> str:
    """How the state of the root's source was learned, and when: "probe 5s ago"."""
    source = next((s for s in root.sources if s.get("pub_id") == root.source_id), None)
    since = source.get("since") if source else None
    if not isinstance(since, (int, float)):
        return "-"
    return f"{source.get('learned', '?')} {age_text(now - since)} ago"


def age_text(seconds: float) -> str:
    """A duration, roughly: 5s, 2m, 3h, 4d."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def replica_text(root: RootInfo) -> Text:
    """How whole a pinned root is held: "3.5 MB of 3.5 MB", "1.0 MB of 3.5 MB, behind 12
    chunks", and why, when a pass failed."""
    replica = root.replica
    if not root.pinned or not replica:
        return Text("-")
    held, total, behind = (int(replica.get(k) or 0) for k in ("bytes", "total", "behind"))
    text = Text(f"{size_text(held)} of {size_text(total)}")
    if behind:
        text.append(f", behind {plural(behind, 'chunk')}", style="yellow")
    if replica.get("problem"):
        text.append(f" ({replica['problem']})", style="red")
    return text


def source_text(root: RootInfo) -> str:
    """Where a root is read from: the origin's URL, or "URL via MIRROR (N hops)"."""
    if not root.source:
        return "-"
    if len(root.hops) < 2 or not root.source_id:
        return root.source
    return f"{root.source} via {root.source_id} ({len(root.hops)} hops)"
