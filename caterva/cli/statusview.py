"""How `caterva status` looks: its subscriber's links, cache and followed roots, as rich
renderables (pure functions of GET /v1/status's answer)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.filesize import decimal as size_text
from rich.table import Table
from rich.text import Text

from caterva.cli.render import plain, plural
from caterva.cli.rootsview import age_text


def yes_no(value: Any, good: bool = True) -> Text:
    if value is None:
        return Text("-")
    return Text("yes" if value else "no", style="green" if bool(value) == good else "red")


def lag_text(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    return f"{seconds:.1f}s" if seconds < 60 else age_text(seconds)


def cache_text(cache: dict[str, Any]) -> Text:
    used, budget = int(cache.get("used") or 0), int(cache.get("budget") or 0)
    share = f" ({used / budget:.0%})" if budget else ""
    text = Text(f"{size_text(used)} of {size_text(budget)}{share}")
    rate = cache.get("hit_rate")
    hits, misses = int(cache.get("hits") or 0), int(cache.get("misses") or 0)
    if isinstance(rate, (int, float)):
        text.append(f", hit rate {rate:.0%} ({plural(hits, 'hit')}, {misses} missed)")
    evicted = int(cache.get("evicted") or 0)
    if evicted:
        text.append(f", {plural(evicted, 'eviction')}", style="yellow")
    return text


def status_view(url: str, found: dict[str, Any]) -> RenderableType:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    health = str(found.get("status"))
    head.add_row("subscriber", Text.assemble(plain(url), " ", plain(health, "green")))
    for n, broker in enumerate(found.get("brokers") or []):
        state = yes_no(broker.get("connected"))
        state.plain = "connected" if broker.get("connected") else "not connected"
        head.add_row(
            "brokers" if n == 0 else "", Text.assemble(plain(broker.get("url")), " ", state)
        )
    mirror = found.get("mirror")
    if mirror:
        head.add_row("mirror", plain(f"{mirror.get('pub_id')} at {mirror.get('url')}"))
    head.add_row("cache", cache_text(found.get("cache") or {}))
    roots = found.get("roots") or []
    if not roots:
        return Group(head, Text("\nno root followed: see `caterva roots`, `caterva follow ROOT`"))
    table = Table(box=None, header_style="bold")
    columns = ("root", "source", "hops", "online", "in sync", "last event", "lag", "problem")
    for column in columns:
        table.add_column(column, justify="right" if column in ("hops", "lag") else "left")
    for root in roots:
        age = root.get("last_event_age")
        source = root.get("source") or "-"
        if root.get("source_id"):
            source += f" ({root['source_id']})"
        table.add_row(
            plain(root.get("root"), style="bold"),
            plain(source),
            str(root["hops"]) if root.get("hops") is not None else "-",
            f"{root.get('sources_online', 0)}/{root.get('sources', 0)}",
            yes_no(root.get("in_sync")),
            f"{age_text(age)} ago" if isinstance(age, (int, float)) else "-",
            lag_text(root.get("lag")),
            plain(root.get("problem") or "", style="red"),
        )
    return Group(head, Text(""), table)
