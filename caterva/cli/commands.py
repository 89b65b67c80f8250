"""Catalog commands: roots, follow, unfollow, list, info, watch.

Thin: parse, call the Client, render (caterva/cli/render.py). None of them imports numpy or
blosc2, so they start fast; errors propagate to run_command() in app.py, which turns them into one
line on stderr and an exit code.
"""

# No `from __future__ import annotations` here: typer would have to eval every command's
# string annotations at each start-up (~9 ms of `caterva roots`).

import json
import sys
from typing import Annotated, Optional

import typer

from caterva.cli import render
from caterva.cli.options import CaFile, Json, Sub, connect, display, emit, err, out
from caterva.cli.startup import long_lived
from caterva.errors import NotFollowed

Root = Annotated[str, typer.Argument(metavar="ROOT", help="A root name.")]
Address = Annotated[
    str, typer.Argument(metavar="ROOT/PATH", help="A dataset, e.g. example/images/terrain.b2nd.")
]


def roots(
    as_json: Json = False,
    sub: Sub = None,
    ca_file: CaFile = None,
) -> None:
    """List the roots the subscriber knows: online, followed, datasets, source."""
    with connect(sub, ca_file) as client:
        found = client.roots()
    if as_json:
        emit({"roots": [r.to_dict() for r in found]})
    else:
        with long_lived():  # rich's tables: only to print one
            from caterva.cli.rootsview import roots_table

        display(roots_table(found))


def follow(
    root: Root,
    pin: Annotated[
        Optional[bool],
        typer.Option(
            "--pin/--no-pin",
            help="Keep ROOT whole: every chunk fetched in the background, refetched as soon as "
            "it changes, never evicted (refused when it cannot fit the cache). --no-pin stops "
            "that; ROOT stays followed.",
        ),
    ] = None,
    as_json: Json = False,
    sub: Sub = None,
    ca_file: CaFile = None,
) -> None:
    """Follow ROOT: the subscriber fetches its manifest and keeps it in sync.

    \b
    Examples:
      caterva follow example
      caterva follow example --pin      # a full replica; progress in `caterva roots`
    """
    with connect(sub, ca_file) as client:
        count = client.follow(root, pin)
    if as_json:
        emit({"root": root, "followed": True, "datasets": count, **_pinned(pin)})
    elif pin:
        display(
            f"following {root} ({render.plural(count, 'dataset')}), pinned: its chunks are "
            "fetched in the background (see `caterva roots`)"
        )
    else:
        unpinned = ", not pinned" if pin is False else ""
        display(f"following {root} ({render.plural(count, 'dataset')}){unpinned}")


def _pinned(pin: Optional[bool]) -> dict:
    return {} if pin is None else {"pinned": pin}


def unfollow(
    root: Root,
    as_json: Json = False,
    sub: Sub = None,
    ca_file: CaFile = None,
) -> None:
    """Stop following ROOT; the subscriber drops its cached chunks. Idempotent: a root
    not followed is not an error."""
    with connect(sub, ca_file) as client:
        try:
            client.unfollow(root)
            was = True
        except NotFollowed:
            was = False
    if as_json:
        emit({"root": root, "followed": False, "was_followed": was})
    elif was:
        display(f"stopped following {root}; its cached chunks are dropped")
    else:
        display(f"{root} was not followed: nothing to do")


def list_(
    root: Root,
    pattern: Annotated[
        str,
        typer.Argument(
            metavar="[PATTERN]",
            help="Only paths that start with it, or, with wildcards, that match it: * within "
            "a directory, ? one character, ** across directories (e.g. 'stations/2024-*').",
        ),
    ] = "",
    limit: Annotated[
        Optional[int],
        typer.Option("--limit", min=1, metavar="N", help="At most N datasets [default: all]."),
    ] = None,
    cursor: Annotated[
        Optional[str],
        typer.Option("--cursor", metavar="CURSOR", help="Continue after a listing cut by --limit."),
    ] = None,
    tree: Annotated[bool, typer.Option("--tree", help="Show directories as a tree.")] = False,
    as_json: Json = False,
    sub: Sub = None,
    ca_file: CaFile = None,
) -> None:
    """List the datasets of a followed ROOT by path, printed as they arrive.

    With --limit, the listing ends with the cursor that continues it (`next` with --json,
    else a line on stderr).

    \b
    Examples:
      caterva list example --tree
      caterva list example 'stations/2024-*' --limit 100
      caterva list example '**/*.b2nd' --json | jq -r '.datasets[].path'
    """
    with connect(sub, ca_file) as client:
        pages = client.pages(root, pattern, limit=limit, cursor=cursor)
        if as_json:
            _json_lines(root, pages)
            return
        if tree:
            entries, nxt = [], None
            for page in pages:
                entries += page.datasets
                nxt = page.next
            display(render.datasets_tree(root, entries))
        else:
            nxt = _text_lines(root, pattern, pages)
    if nxt is not None:
        err().print(f"more datasets: continue with --cursor {nxt}")


def _json_lines(root: str, pages) -> None:
    """The --json document, written a page at a time: ``{"root", "datasets", "next"}``, the
    datasets copied as the subscriber sent them (decoding and encoding 100,000 of them
    would take seconds)."""
    sys.stdout.flush()
    write = sys.stdout.buffer.write
    write(f'{{"root": {json.dumps(root)}, "datasets": ['.encode())
    comma, nxt = b"", None
    for page in pages:
        if page.lines:
            write(comma + b", ".join(page.lines))
            comma = b", "
            sys.stdout.buffer.flush()
        nxt = page.next
    write(f'], "next": {json.dumps(nxt)}}}\n'.encode())
    sys.stdout.buffer.flush()


def _text_lines(root: str, pattern: str, pages) -> str | None:
    """Aligned lines, a page at a time; the cursor that continues the listing."""
    columns, nxt = render.Columns(), None
    for page in pages:
        if page.datasets:
            sys.stdout.write(columns.lines(page.datasets))
            sys.stdout.flush()
        nxt = page.next
    if not columns.started:
        what = f"no dataset of {root} matches {pattern!r}" if pattern else f"{root} has no datasets"
        display(render.plain(what))
    return nxt


def info(
    address: Address,
    as_json: Json = False,
    sub: Sub = None,
    ca_file: CaFile = None,
) -> None:
    """Describe a dataset: shape, dtype, chunks, blocks, codec, ratio, vlmeta, cached.

    \b
    Example:
      caterva info example/images/terrain.b2nd
    """
    with connect(sub, ca_file) as client:
        ds = client.dataset(address)
    if as_json:
        emit(render.info_json(ds.address, ds.info, ds.cached))
    else:
        display(render.info_view(ds.address, ds.info, ds.cached))


def watch(
    root: Annotated[
        Optional[str], typer.Argument(metavar="[ROOT]", help="A followed root [default: all].")
    ] = None,
    as_json: Json = False,
    sub: Sub = None,
    ca_file: CaFile = None,
) -> None:
    """Print change events of ROOT as they happen, until Ctrl-C."""
    try:
        with connect(sub, ca_file) as client, client.watch(root) as events:
            err().print(f"watching {root or 'every followed root'} (Ctrl-C to stop)")
            for event in events:
                if as_json:
                    emit(event)
                else:
                    out().print(render.event_line(event))
                    out().file.flush()  # piped output must not sit in a buffer
    except KeyboardInterrupt:
        return  # the way to stop watching: not an error


def register(app: typer.Typer) -> None:
    app.command()(roots)
    app.command()(follow)
    app.command()(unfollow)
    app.command("list")(list_)
    app.command()(info)
    app.command()(watch)
