"""The ``caterva`` command. Commands are thin: parse, call, render; errors become exit codes
only here, at the edge. Heavy modules (blosc2, numpy, services) are imported inside the
commands that need them, so ``caterva roots`` starts fast."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from caterva.errors import BadRequest, CatervaError, NotFound, Unauthorized, Unavailable

app = typer.Typer(
    name="caterva",
    help="Publish, follow and read Blosc2 datasets across machines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts say "[env CATERVA_X]": plain text, not rich markup
)

# exit codes, documented in the README
EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_AUTH = 1, 2, 3, 4, 5


def exit_code(exc: CatervaError) -> int:
    if isinstance(exc, BadRequest):
        return EXIT_USAGE
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, Unavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, PermissionError):
        return EXIT_AUTH
    return EXIT_ERROR


def setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=_stderr(), show_path=False, rich_tracebacks=False)],
    )
    for noisy in ("amqtt", "transitions", "httpx", "httpcore", "uvicorn.error", "numexpr"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _stderr():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)  # never split an error line mid-text


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")]
Broker = Annotated[
    Optional[str],
    typer.Option("--broker", help="MQTT broker URL, mqtt://HOST:PORT [env CATERVA_BROKER]."),
]
Statedir = Annotated[
    Optional[Path],
    typer.Option("--statedir", help="Where this service keeps its state [env CATERVA_STATEDIR]."),
]


@app.command()
def bro(
    host: Annotated[Optional[str], typer.Option(help="Address to bind [default 127.0.0.1].")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port to bind [default 1883].")] = None,
    engine: Annotated[str, typer.Option(help="amqtt (embedded) or mosquitto.")] = "amqtt",
    statedir: Statedir = None,
    verbose: Verbose = False,
) -> None:
    """Run an MQTT broker: embedded (amqtt) by default, or a Mosquitto child process."""
    setup_logging(verbose)
    from services.broker import run

    run(engine=engine, host=host, port=port, statedir=statedir)


@app.command()
def pub(
    name: Annotated[str, typer.Argument(help="Root name to publish the directory as.")],
    directory: Annotated[Path, typer.Argument(help="Directory of datasets to publish.")],
    broker: Broker = None,
    http: Annotated[
        Optional[str], typer.Option(help="HOST:PORT to serve REST on [default 127.0.0.1:8470].")
    ] = None,
    statedir: Statedir = None,
    verbose: Verbose = False,
) -> None:
    """Publish DIRECTORY as root NAME: announce it over MQTT and serve its chunks over REST."""
    setup_logging(verbose)
    from services.publisher import run

    run(name=name, directory=directory, broker=broker, http=http, statedir=statedir)


@app.command()
def sub(
    broker: Broker = None,
    http: Annotated[
        Optional[str], typer.Option(help="HOST:PORT to serve the API on [default 127.0.0.1:8471].")
    ] = None,
    statedir: Statedir = None,
    cache_size: Annotated[
        Optional[str], typer.Option(help="Disk budget of the chunk cache, e.g. 20GiB [default 10GiB].")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Run a subscriber: discover roots, follow them, fetch chunks on demand and cache them."""
    setup_logging(verbose)
    from services.subscriber import run

    run(broker=broker, http=http, statedir_flag=statedir, cache_size=cache_size)


# client commands (roots, follow, unfollow, list, info, watch, show, download) live in their
# own modules; they register on the same app
from caterva.cli import commands, data  # noqa: E402

commands.register(app)
data.register(app)


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Argument(help="Directory to publish [default: ./root-example].")
    ] = Path("root-example"),
    root: Annotated[str, typer.Option(help="Root name to publish it as.")] = "example",
    workdir: Annotated[
        Optional[Path], typer.Option(help="Keep state and logs here [default: a temp dir].")
    ] = None,
) -> None:
    """Run the whole flow once: broker, publisher, subscriber, and a client reading."""
    from rich.console import Console

    from caterva.cli.demo import run

    run(directory, root, workdir, Console(soft_wrap=True))


def main() -> None:
    try:
        app()
    except CatervaError as exc:
        _stderr().print(f"[bold red]error:[/] {exc.message}", highlight=False)
        if isinstance(exc, Unauthorized):
            _stderr().print("run [bold]caterva login[/] and try again", highlight=False)
        sys.exit(exit_code(exc))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
