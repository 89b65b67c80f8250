"""Options every client command takes, and the two output streams.

Human output goes through rich consoles; ``--json`` output is one JSON document on stdout
(one per line for ``watch``). Errors are not printed here: they propagate as caterva errors
to ``main()`` in app.py, which prints one line on stderr and picks the exit code.
"""

from __future__ import annotations

import json
import os
import sys
from functools import cache
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from caterva.cli.startup import long_lived

Json = Annotated[bool, typer.Option("--json", help="Machine output: one JSON document on stdout.")]
Sub = Annotated[
    Optional[str],
    typer.Option("--sub", metavar="URL", help="Subscriber to talk to [env CATERVA_SUB]."),
]
CaFile = Annotated[
    Optional[str],
    typer.Option("--ca-file", metavar="PATH",
                 help="Verify an https:// subscriber against this CA [env CATERVA_CA_FILE]."),
]


def connect(sub: str | None, ca_file: str | None = None):
    """A Client for --sub (default setting("sub")), with the token `caterva login` stored for
    it; httpx loads only when a command runs. Selections come decoded, as .npy: a one-shot
    process would spend more importing blosc2 (~0.3 s) than decoding saves."""
    with long_lived():  # httpx, the client and its transport (caterva/cli/startup.py)
        from caterva.client.sync import Client  # not caterva.client: that loads the async one too

        return Client(sub, ca_file=ca_file, selections="npy")


@cache
def out() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # piped or redirected: rich would assume 80 columns and crop wide tables
        console.width = 200
    return console


@cache
def err() -> Console:
    return Console(stderr=True, highlight=False)


def emit(document: Any) -> None:
    """One JSON document (one line) on stdout, flushed, so a reader gets it at once."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()
