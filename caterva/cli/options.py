"""Options every client command takes, and the two output streams.

Human output goes through rich consoles that print strings as they are (no markup, no emoji
codes: names are data); ``--json`` output is one JSON document on stdout
(one per line for ``watch``). Errors are not printed here: they propagate as caterva errors
to ``run_command()`` in app.py, which prints one line on stderr and picks the exit code.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from caterva.cli.render import literal
from caterva.cli.startup import long_lived, one_shot
from caterva.errors import BadCredentials, BadRequest, Unauthorized, Unavailable
from caterva.protocol import rest

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from caterva.client.sync import Client

PROBE_TIMEOUT = 3.0  # seconds: a subscriber's health route answers at once

Json = Annotated[bool, typer.Option("--json", help="Machine output: one JSON document on stdout.")]
Sub = Annotated[
    Optional[str],
    typer.Option(
        "--sub",
        metavar="URL",
        help="Subscriber to talk to [default http://127.0.0.1:8471; env CATERVA_SUB].",
    ),
]
CaFile = Annotated[
    Optional[str],
    typer.Option(
        "--ca-file",
        metavar="PATH",
        help="Verify an https:// subscriber against this CA [env CATERVA_CA_FILE].",
    ),
]


@contextmanager
def connect(sub: str | None, ca_file: str | None = None) -> Iterator[Client]:
    """A Client for --sub (default setting("sub")), with the token `caterva login` stored for
    it; httpx loads only when a command runs. Selections come decoded, as .npy: a one-shot
    process would spend more importing blosc2 (~0.3 s) than decoding saves.

    The server is checked first (``probe``), and errors leave with the advice only the command
    line can give: which flag, variable or file chose the URL, and how to log in."""
    with long_lived():  # httpx, the client and its transport (caterva/cli/startup.py)
        from caterva.client.sync import Client  # not caterva.client: that loads the async one too
    one_shot()  # a client command: no teardown at exit (caterva/cli/startup.py)

    client = Client(sub, ca_file=ca_file, selections="npy")
    try:
        with client:
            probe(client)
            yield client
    except Unauthorized as exc:
        if not isinstance(exc, BadCredentials):
            exc.message += f": run `caterva login --sub {client.url}` and try again"
        raise
    except Unavailable as exc:
        if exc.detail.get("unreachable"):
            exc.message += f": start one with `caterva sub`, or {_repoint(sub)}"
        raise


def probe(client: Client) -> None:
    """Is ``client.url`` a caterva subscriber? One quick GET /v1/health says, so a wrong --sub
    fails in seconds with a reason (an MQTT port accepts the connection and never answers; a
    publisher answers every subscriber route with 404). Reads get the client's long timeout
    only once the server is known to be a subscriber, which may wait on a far source."""
    from caterva.client.calls import Call
    from caterva.client.transport import Timeout, kind_of, mapped

    url = client.url
    call = Call("GET", rest.HEALTH, timeout=Timeout(PROBE_TIMEOUT, PROBE_TIMEOUT))
    try:
        with mapped(url), client._exchange(call) as response:  # failures: the client's errors
            response.read()
    except Unavailable as exc:
        if kind_of(exc.__cause__) == "read-timeout":
            raise BadRequest(
                f"{url} did not answer within {PROBE_TIMEOUT:g} s: it is not a "
                "caterva subscriber (an MQTT broker's port, maybe?)"
            ) from None
        raise
    if response.status_code in (401, 403):
        return  # a guarded subscriber: the command's own request says what is needed
    try:
        body = response.json() if response.status_code == 200 else None
    except ValueError:
        body = None
    if isinstance(body, dict) and "pub_id" in body and "root" in body:
        raise BadRequest(
            f"{url} is a caterva publisher (of root {literal(body['root'])}), "
            "not a subscriber: point --sub at a subscriber (`caterva sub`)"
        )
    if not (isinstance(body, dict) and body.get("status") == "ok"):
        raise BadRequest(
            f"{url} does not answer like a caterva subscriber "
            f"(GET {rest.HEALTH}: HTTP {response.status_code})"
        )


def _repoint(flag: str | None) -> str:
    """How to change the subscriber URL, naming where the one in use came from."""
    if flag is None and "CATERVA_SUB" in os.environ:
        return "point CATERVA_SUB (or --sub) at a running one"
    if flag is None:
        from caterva.config import _file_settings, config_path

        path = config_path()
        if path is not None and "sub" in _file_settings(path):
            return f"fix `sub` in {path} (or give --sub)"
    return "point --sub (env CATERVA_SUB) at a running one"


@cache
def out() -> Console:
    with long_lived():  # rich, as the start-up's modules (caterva/cli/startup.py)
        from rich.console import Console

    console = Console(highlight=False, markup=False, emoji=False)  # names print as they are
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # piped or redirected: rich would assume 80 columns and crop wide tables
        console.width = PIPED_WIDTH
    return console


PIPED_WIDTH = 200


def plain() -> bool:
    """Whether stdout takes text without styles (piped, redirected): rich's answer, without
    loading rich (~10 ms) unless its variables (TTY_COMPATIBLE, FORCE_COLOR) may change it."""
    if "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ:
        return not out().is_terminal
    try:
        return not sys.stdout.isatty()
    except ValueError:  # closed
        return True


def width() -> int:
    """The columns stdout's text is laid out in (out()'s width)."""
    columns = os.environ.get("COLUMNS", "")
    if plain():
        return int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH
    return out().width


@cache
def err() -> Console:
    with long_lived():
        from rich.console import Console

    # soft_wrap: never split an error line mid-text
    return Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)


_PADDING = re.compile(r" +(?=(?:\x1b\[[0-9;]*m)*$)", re.MULTILINE)


def display(renderable: RenderableType) -> None:
    """Print on stdout, without the spaces rich pads the last column of a table with. Text
    goes as it is (a line, or any when ``plain()``): rich (~10 ms to import) is for tables,
    trees, styles and wrapping."""
    if isinstance(renderable, str) and ("\n" not in renderable or plain()):
        sys.stdout.write(renderable + "\n")
        sys.stdout.flush()
        return
    console = out()
    with console.capture() as captured:
        console.print(renderable)
    console.file.write(_PADDING.sub("", captured.get()))
    console.file.flush()


def on_terminal() -> bool:
    """Whether a person watches stderr (for progress bars): rich's answer, without loading rich
    unless its variables (TTY_COMPATIBLE, FORCE_COLOR) may change it."""
    if "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ:
        return err().is_terminal
    try:
        return sys.stderr.isatty()
    except ValueError:  # closed
        return False


def emit(document: Any) -> None:
    """One JSON document (one line) on stdout, flushed, so a reader gets it at once."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()
