"""The ``caterva`` command. Commands are thin: parse, call, render; errors become exit codes
only here, at the edge. Heavy modules (blosc2, numpy, services) are imported inside the
commands that need them, so ``caterva roots`` starts fast."""

# No `from __future__ import annotations` here: typer would have to eval every command's
# string annotations at each start-up (~9 ms of `caterva roots`).

import os
import sys
from functools import cache
from pathlib import Path
from typing import Annotated, Optional

from caterva.cli import startup
from caterva.cli.startup import long_lived

with long_lived():  # typer, rich and the commands' modules (caterva/cli/startup.py)
    import typer

    from caterva.cli import commands, daemons, data, helptext, status, trust, users
    from caterva.cli.options import err, on_terminal
    from caterva.cli.render import literal
    from caterva.errors import BadRequest, CatervaError, NotFollowed, NotFound, Unavailable


@cache
def _plain_values_without_pydantic() -> None:
    """typer coerces option and argument values through a pydantic TypeAdapter, and importing
    pydantic is ~40-80 ms of a command that has one (a quarter of `caterva roots`). A ``str``,
    ``bool``, ``int`` or ``Path`` parameter whose value already is one needs no coercion (click
    made it one; a path is made from click's text), so ours skip it; any other value still gets
    typer's own. This leans on typer internals: if they move, the patch steps
    aside and commands are only slower (tests/unit/test_cli_startup.py notices). Made by
    run_command(), the `caterva` process, not at import: a program importing the CLI keeps
    typer as is.
    """
    from dataclasses import dataclass
    from typing import Any

    from typer import core

    try:
        from typer._coercion import RuntimeParam

        build = core.build_runtime_param
    except (ImportError, AttributeError):
        return

    @dataclass(frozen=True)
    class Plain(RuntimeParam):
        descriptor: Any

        def _coerce_value(self, value, param, ctx):
            if type(value) is self.annotation:
                return value
            if self.annotation is Path and type(value) is str:  # click's path, as typed
                return Path(value)
            return build(self.descriptor)._coerce_value(value, param=param, ctx=ctx)

    def build_runtime_param(descriptor):
        if (
            descriptor.annotation in (str, bool, int, Path)
            and descriptor.file_annotation is None
            and descriptor.parameter_info.parser is None
        ):
            return Plain(descriptor.parameter_info, descriptor.annotation, descriptor)
        return build(descriptor)

    core.build_runtime_param = build_runtime_param


helptext.adjust_typer()

app = typer.Typer(
    name="caterva",
    help="Publish, follow and read Blosc2 datasets across machines.",
    epilog=helptext.EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts say "[env CATERVA_X]": plain text, not rich markup
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"caterva {version('caterva')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Publish, follow and read Blosc2 datasets across machines."""


# exit codes, documented in the README and in `caterva --help`
EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_UNAVAILABLE, EXIT_AUTH = 1, 2, 3, 4, 5
EXIT_NOT_FOLLOWED = 6


def exit_code(exc: CatervaError) -> int:
    if isinstance(exc, BadRequest):
        return EXIT_USAGE
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, NotFollowed):
        return EXIT_NOT_FOLLOWED
    if isinstance(exc, Unavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, PermissionError):
        return EXIT_AUTH
    return EXIT_ERROR


# the service commands (bro, pub, sub) come first in the help, then the client commands
# (roots, follow, unfollow, list, info, watch, show, download); each module registers its own
daemons.register(app)
commands.register(app)
data.register(app)
users.register(app)  # user add/grant/revoke/list/remove/passwd, login, logout
trust.register(app)  # which signing key each root is bound to
status.register(app)  # the subscriber at a glance


@app.command()
def demo(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="[DIRECTORY]",
            show_default=False,
            help="Directory to publish [default: ./root-example].",
        ),
    ] = Path("root-example"),
    root: Annotated[
        str, typer.Option(metavar="NAME", help="Root name to publish it as.")
    ] = "example",
    workdir: Annotated[
        Optional[Path],
        typer.Option(metavar="DIR", help="Keep state and logs here [default: a temp dir]."),
    ] = None,
) -> None:
    """Run the whole flow once. A broker, a publisher, a subscriber, and a client reading."""
    from rich.console import Console

    from caterva.cli.demo import run

    run(directory, root, workdir, Console(soft_wrap=True))


def run_command() -> None:
    """Parse the command line and run the command; errors become one line on stderr and an
    exit code here, at the edge. ``main`` runs it in the `caterva` program; tests call it in
    their own process."""
    # Optional parts of httpx this process never uses, which it imports when they are
    # installed: its own command line (click, pygments, rich.syntax: ~20 ms), HTTP/2 (h2,
    # ~11 ms; our clients speak HTTP/1.1) and, through httpcore, trio (~85 ms, with attrs:
    # half of `caterva roots`; caterva runs on asyncio). A None entry makes the import fail,
    # which all three handle as "not installed". Only the `caterva` process: library users
    # keep them.
    for optional in ("httpx._main", "h2", "trio"):
        sys.modules.setdefault(optional, None)
    # numpy's OpenBLAS starts a thread per core as numpy is imported (~40 ms of a `caterva
    # show` on 2 cores); no command does linear algebra. Unless the user chose otherwise.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _plain_values_without_pydantic()
    try:
        app()
    except CatervaError as exc:
        # one line, the message as it is: names in it are data, not markup
        if on_terminal():
            from rich.text import Text

            err().print(Text.assemble(("error:", "bold red"), " ", literal(exc.message)))
        else:  # no style to show: rich (~10 ms to import) has nothing to do
            sys.stderr.write(f"error: {literal(exc.message)}\n")
        sys.exit(exit_code(exc))
    except KeyboardInterrupt:
        sys.exit(130)


def main() -> None:
    """The `caterva` program (its script, ``python -m caterva``): run_command(), and after a
    client command an exit without the interpreter's teardown (caterva/cli/startup.py)."""
    try:
        run_command()
    except SystemExit as exc:
        startup.leave(exc.code)
        raise
    startup.leave(0)


if __name__ == "__main__":
    main()
