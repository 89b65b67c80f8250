"""``caterva status``: a subscriber at a glance (GET /v1/status), for a person or, with
--json, for a script: its broker links, the cache against its budget with its hit rate, and a
row per followed root (chosen source, hops, sources online, in sync, last event, lag)."""

# No `from __future__ import annotations` here: typer evaluates annotations at start-up.

import typer

from caterva.cli.options import CaFile, Json, Sub, connect, display, emit


def status(as_json: Json = False, sub: Sub = None, ca_file: CaFile = None) -> None:
    """Show the subscriber's health: broker links, cache use and hit rate, and each followed
    root's source, hops, sources online, last event and freshness lag.

    \b
    Examples:
      caterva status
      caterva status --json | jq '.roots[] | select(.in_sync == false)'
    """
    with connect(sub, ca_file) as client:
        found = client.status()
        url = client.url
    if as_json:
        emit(found)
    else:
        from caterva.cli.statusview import status_view  # rich's tables: only to print one

        display(status_view(url, found))


def register(app: typer.Typer) -> None:
    app.command()(status)
