"""Catalog commands: roots, follow, unfollow, list, info, watch.

Thin: parse, call the Client, render (caterva/cli/render.py). None of them imports numpy or
blosc2, so they start fast; errors propagate to main() in app.py, which turns them into one
line on stderr and an exit code.
"""

# No `from __future__ import annotations` here: typer would have to eval every command's
# string annotations at each start-up (~9 ms of `caterva roots`).

from typing import Annotated, Optional

import typer

from caterva.cli import render
from caterva.cli.options import CaFile, Json, Sub, connect, display, emit, err, out
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
        display(render.roots_table(found))


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
    tree: Annotated[bool, typer.Option("--tree", help="Show directories as a tree.")] = False,
    as_json: Json = False,
    sub: Sub = None,
    ca_file: CaFile = None,
) -> None:
    """List the datasets of a followed ROOT.

    \b
    Examples:
      caterva list example --tree
      caterva list example --json | jq -r '.datasets[].path'
    """
    with connect(sub, ca_file) as client:
        infos = client.list(root)
    if as_json:
        emit({"root": root, "datasets": [render.dataset_summary(i) for i in infos]})
    elif tree:
        display(render.datasets_tree(root, infos))
    else:
        display(render.datasets_table(root, infos))


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
