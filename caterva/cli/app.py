"""The ``caterva`` command. Commands are thin: parse, call, render; errors become exit codes
only here, at the edge. Heavy modules (blosc2, numpy, services) are imported inside the
commands that need them, so ``caterva roots`` starts fast."""

# No `from __future__ import annotations` here: typer would have to eval every command's
# string annotations at each start-up (~9 ms of `caterva roots`).

import sys
from pathlib import Path
from typing import Annotated, Optional

from caterva.cli.startup import long_lived

with long_lived():  # typer, rich and the commands' modules (caterva/cli/startup.py)
    import typer

    from caterva.cli import commands, data, security, users
    from caterva.errors import (
        BadCredentials,
        BadRequest,
        CatervaError,
        NotFound,
        Unauthorized,
        Unavailable,
    )


def _plain_values_without_pydantic() -> None:
    """typer coerces option and argument values through a pydantic TypeAdapter, and importing
    pydantic is ~80 ms of every command (a quarter of `caterva roots`). A ``str`` or ``bool``
    parameter whose value already is one needs no coercion, so ours skip it; any other value
    still gets typer's own. This leans on typer internals: if they move, the patch steps
    aside and commands are only slower (tests/unit/test_cli_startup.py notices).
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
            return build(self.descriptor)._coerce_value(value, param=param, ctx=ctx)

    def build_runtime_param(descriptor):
        if (descriptor.annotation in (str, bool) and descriptor.file_annotation is None
                and descriptor.parameter_info.parser is None):
            return Plain(descriptor.parameter_info, descriptor.annotation, descriptor)
        return build(descriptor)

    core.build_runtime_param = build_runtime_param


_plain_values_without_pydantic()

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


def setup_logging(verbose: bool, level: Optional[str], fmt: Optional[str],
                  access_log: Optional[bool] = None) -> None:
    from caterva import logs
    from caterva.config import setting

    logs.setup(setting("log_level", "debug" if verbose else level),
               setting("log_format", fmt), setting("access_log", access_log))


def _stderr():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)  # never split an error line mid-text


Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Log debug detail (--log-level debug).")]
LogLevel = Annotated[Optional[str], typer.Option(
    "--log-level", metavar="LEVEL",
    help="debug, info, warning or error [default info; env CATERVA_LOG_LEVEL].")]
LogFormat = Annotated[Optional[str], typer.Option(
    "--log-format", metavar="FORMAT",
    help="text (one line a record, UTC times) or json (one object a line) [default text; "
    "env CATERVA_LOG_FORMAT].")]
AccessLog = Annotated[Optional[bool], typer.Option(
    "--access-log", help="Log every HTTP request [env CATERVA_ACCESS_LOG].")]
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
    password_file: Annotated[Optional[Path], typer.Option(
        "--password-file", "--users-file", metavar="PATH", rich_help_panel=security.PANEL,
        help="Require MQTT logins: USER:PASSWORD lines (plain, or mosquitto_passwd's "
        "sha512-pbkdf2 hashes); each user may publish only under caterva/v1/pub/USER/ "
        "[env CATERVA_BROKER_PASSWORD_FILE].")] = None,
    tls_cert: security.TlsCert = None,
    tls_key: security.TlsKey = None,
    verbose: Verbose = False,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
) -> None:
    """Run an MQTT broker: embedded (amqtt) by default, or a Mosquitto child process."""
    setup_logging(verbose, log_level, log_format)
    from services.broker import run

    run(engine=engine, host=host, port=port, statedir=statedir, password_file=password_file,
        tls_cert=tls_cert, tls_key=tls_key)


@app.command()
def pub(
    name: Annotated[str, typer.Argument(help="Root name to publish the directory as.")],
    directory: Annotated[Path, typer.Argument(help="Directory of datasets to publish.")],
    broker: Broker = None,
    http: Annotated[
        Optional[str], typer.Option(help="HOST:PORT to serve REST on [default 127.0.0.1:8470].")
    ] = None,
    statedir: Statedir = None,
    pub_id: Annotated[Optional[str], typer.Option(
        "--pub-id", metavar="ID", rich_help_panel=security.PANEL,
        help="This publisher's id in MQTT topics [default: generated once; with broker auth, "
        "the MQTT username, which it must equal; env CATERVA_PUB_ID].")] = None,
    require_token: security.RequireToken = None,
    require_token_file: security.RequireTokenFile = None,
    tls_cert: security.TlsCert = None,
    tls_key: security.TlsKey = None,
    ca_file: security.CaFile = None,
    broker_user: security.BrokerUser = None,
    broker_password: security.BrokerPassword = None,
    verbose: Verbose = False,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
    access_log: AccessLog = None,
) -> None:
    """Publish DIRECTORY as root NAME: announce it over MQTT and serve its chunks over REST."""
    setup_logging(verbose, log_level, log_format, access_log)
    from caterva.config import setting
    from services.publisher import run
    from services.security import Security

    guard = Security.build(require_token=require_token, require_token_file=require_token_file,
                           tls_cert=tls_cert, tls_key=tls_key, ca_file=ca_file)
    [broker] = security.with_broker_credentials(
        [setting("broker", broker)], broker_user, broker_password, ca_file)
    run(name=name, directory=directory, broker=broker, http=http, statedir=statedir,
        pub_id=pub_id, security=guard)


@app.command()
def sub(
    broker: Annotated[
        Optional[list[str]],
        typer.Option(
            "--broker", metavar="URL",
            help="MQTT broker URL, mqtt://HOST:PORT; repeat to discover on several, the first "
            "being this subscriber's own (its LAN's) [env CATERVA_BROKER, comma-separated].",
        ),
    ] = None,
    http: Annotated[
        Optional[str], typer.Option(help="HOST:PORT to serve the API on [default 127.0.0.1:8471].")
    ] = None,
    statedir: Statedir = None,
    cache_size: Annotated[
        Optional[str], typer.Option(help="Disk budget of the chunk cache, e.g. 20GiB [default 10GiB].")
    ] = None,
    republish: Annotated[
        Optional[bool],
        typer.Option("--republish", help="Serve the followed roots to others and announce them "
                     "as a mirror [env CATERVA_REPUBLISH]."),
    ] = None,
    republish_broker: Annotated[
        Optional[str],
        typer.Option(metavar="URL", help="Announce as a mirror on this broker (the LAN's) "
                     "[default: the first --broker; env CATERVA_REPUBLISH_BROKER]."),
    ] = None,
    advertise: Annotated[
        Optional[str],
        typer.Option(metavar="URL", help="The URL a mirror announces [default: the one it is "
                     "bound to; env CATERVA_ADVERTISE]."),
    ] = None,
    prefer: Annotated[
        Optional[list[str]],
        typer.Option(metavar="PUB_ID_OR_URL", help="Read from this source when it is online; "
                     "repeatable, first wins [env CATERVA_PREFER, comma-separated]."),
    ] = None,
    pub_id: Annotated[Optional[str], typer.Option(
        "--pub-id", metavar="ID",
        help="A mirror's id, shown as `via ID` downstream [default: the MQTT username, else "
        "generated once and kept in the state directory; env CATERVA_PUB_ID].")] = None,
    auth: Annotated[Optional[bool], typer.Option(
        "--auth", rich_help_panel=security.PANEL,
        help="Require login (POST /v1/login) and serve each user only the roots granted with "
        "`caterva user grant` [env CATERVA_AUTH].")] = None,
    users: Annotated[Optional[Path], typer.Option(
        "--users", metavar="PATH", rich_help_panel=security.PANEL,
        help="The users database; implies --auth [default: <statedir>/users.db; "
        "env CATERVA_USERS].")] = None,
    token_ttl: Annotated[Optional[str], typer.Option(
        "--token-ttl", metavar="DURATION", rich_help_panel=security.PANEL,
        help="How long a login lasts, e.g. 12h, 30d [default 12h; env CATERVA_TOKEN_TTL].")] = None,
    source_token: security.SourceToken = None,
    source_token_file: security.SourceTokenFile = None,
    require_token: security.RequireToken = None,
    require_token_file: security.RequireTokenFile = None,
    tls_cert: security.TlsCert = None,
    tls_key: security.TlsKey = None,
    ca_file: security.CaFile = None,
    broker_user: security.BrokerUser = None,
    broker_password: security.BrokerPassword = None,
    verbose: Verbose = False,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
    access_log: AccessLog = None,
) -> None:
    """Run a subscriber: discover roots, follow them, fetch chunks on demand and cache them;
    with --republish, serve them to the LAN as a mirror."""
    setup_logging(verbose, log_level, log_format, access_log)
    from caterva.config import setting, setting_list
    from services.security import Security
    from services.subscriber import run

    guard = Security.build(
        auth=auth, users=users, token_ttl=token_ttl, source_token=source_token,
        source_token_file=source_token_file, require_token=require_token,
        require_token_file=require_token_file, tls_cert=tls_cert, tls_key=tls_key,
        ca_file=ca_file,
    )
    guard.check_republishing(bool(setting("republish", republish)))
    broker = security.with_broker_credentials(
        setting_list("broker", broker), broker_user, broker_password, ca_file)
    if republish_broker:
        [republish_broker] = security.with_broker_credentials(
            [republish_broker], broker_user, broker_password, ca_file)
    run(broker=broker, http=http, statedir_flag=statedir, cache_size=cache_size,
        republish=republish, republish_broker=republish_broker, advertise=advertise,
        prefer=prefer, pub_id=pub_id, security=guard)


# client commands (roots, follow, unfollow, list, info, watch, show, download) live in their
# own modules; they register on the same app
commands.register(app)
data.register(app)
users.register(app)  # user add/grant/revoke/list/remove/passwd, login, logout


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
    # Optional parts of httpx this process never uses, which it imports when they are
    # installed: its own command line (click, pygments, rich.syntax: ~20 ms) and HTTP/2 (h2,
    # ~11 ms; our clients speak HTTP/1.1). A None entry makes the import fail, which both
    # handle as "not installed". Only the `caterva` process: library users keep them.
    for optional in ("httpx._main", "h2"):
        sys.modules.setdefault(optional, None)
    try:
        app()
    except CatervaError as exc:
        _stderr().print(f"[bold red]error:[/] {exc.message}", highlight=False)
        if isinstance(exc, Unauthorized) and not isinstance(exc, BadCredentials):
            _stderr().print("run [bold]caterva login[/] and try again", highlight=False)
        sys.exit(exit_code(exc))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
