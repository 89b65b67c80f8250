"""The ``caterva`` command. Commands are thin: parse, call, render; errors become exit codes
only here, at the edge. Heavy modules (blosc2, numpy, services) are imported inside the
commands that need them, so ``caterva roots`` starts fast."""

# No `from __future__ import annotations` here: typer would have to eval every command's
# string annotations at each start-up (~9 ms of `caterva roots`).

import sys
from functools import cache
from pathlib import Path
from typing import Annotated, Optional

from caterva.cli.startup import long_lived

with long_lived():  # typer, rich and the commands' modules (caterva/cli/startup.py)
    import typer

    from caterva.cli import commands, data, helptext, security, trust, users
    from caterva.cli.options import err
    from caterva.cli.render import literal
    from caterva.errors import BadRequest, CatervaError, NotFollowed, NotFound, Unavailable


@cache
def _plain_values_without_pydantic() -> None:
    """typer coerces option and argument values through a pydantic TypeAdapter, and importing
    pydantic is ~80 ms of every command (a quarter of `caterva roots`). A ``str`` or ``bool``
    parameter whose value already is one needs no coercion, so ours skip it; any other value
    still gets typer's own. This leans on typer internals: if they move, the patch steps
    aside and commands are only slower (tests/unit/test_cli_startup.py notices). Made by
    main(), the `caterva` process, not at import: a program importing the CLI keeps typer as is.
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
        if (
            descriptor.annotation in (str, bool)
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


def setup_logging(
    verbose: bool, level: Optional[str], fmt: Optional[str], access_log: Optional[bool] = None
) -> None:
    from caterva import logs
    from caterva.config import setting

    logs.setup(
        setting("log_level", "debug" if verbose else level),
        setting("log_format", fmt),
        setting("access_log", access_log),
    )


def _stderr():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)  # never split an error line mid-text


Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Log debug detail (--log-level debug).")
]
LogLevel = Annotated[
    Optional[str],
    typer.Option(
        "--log-level",
        metavar="LEVEL",
        help="debug, info, warning or error [default info; env CATERVA_LOG_LEVEL].",
    ),
]
LogFormat = Annotated[
    Optional[str],
    typer.Option(
        "--log-format",
        metavar="FORMAT",
        help="text (one line a record, UTC times) or json (one object a line) [default text; "
        "env CATERVA_LOG_FORMAT].",
    ),
]
AccessLog = Annotated[
    Optional[bool],
    typer.Option("--access-log", help="Log every HTTP request [env CATERVA_ACCESS_LOG]."),
]
Broker = Annotated[
    Optional[str],
    typer.Option(
        "--broker",
        metavar="URL",
        help="MQTT broker URL, mqtt://HOST:PORT "
        "[default mqtt://127.0.0.1:1883; env CATERVA_BROKER].",
    ),
]
Statedir = Annotated[
    Optional[Path],
    typer.Option(
        "--statedir",
        metavar="DIR",
        help="Where this service keeps its state "
        "[default ~/.local/state/caterva/SERVICE; env CATERVA_STATEDIR].",
    ),
]


@app.command()
def bro(
    host: Annotated[
        Optional[str],
        typer.Option(
            metavar="ADDR", help="Address to bind [default 127.0.0.1; env CATERVA_BROKER_HOST]."
        ),
    ] = None,
    port: Annotated[
        Optional[int],
        typer.Option(metavar="PORT", help="Port to bind [default 1883; env CATERVA_BROKER_PORT]."),
    ] = None,
    engine: Annotated[
        str, typer.Option(metavar="ENGINE", help="amqtt (embedded) or mosquitto.")
    ] = "amqtt",
    statedir: Statedir = None,
    password_file: Annotated[
        Optional[Path],
        typer.Option(
            "--password-file",
            "--users-file",
            metavar="PATH",
            rich_help_panel=security.PANEL,
            help="Require MQTT logins: USER:PASSWORD lines (plain, or mosquitto_passwd's "
            "sha512-pbkdf2 hashes); each user may publish only under caterva/v1/pub/USER/ "
            "[env CATERVA_BROKER_PASSWORD_FILE].",
        ),
    ] = None,
    tls_cert: security.TlsCert = None,
    tls_key: security.TlsKey = None,
    verbose: Verbose = False,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
) -> None:
    """Run an MQTT broker. Embedded (amqtt) by default, or a Mosquitto child process.

    \b
    Examples:
      caterva bro                          # 127.0.0.1:1883
      caterva bro --host 0.0.0.0 --engine mosquitto
    """
    setup_logging(verbose, log_level, log_format)
    from caterva.broker import run

    run(
        engine=engine,
        host=host,
        port=port,
        statedir=statedir,
        password_file=password_file,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )


@app.command()
def pub(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Root name to publish it as.")],
    directory: Annotated[
        Path, typer.Argument(metavar="DIRECTORY", help="Directory of datasets to publish.")
    ],
    broker: Broker = None,
    http: Annotated[
        Optional[str],
        typer.Option(
            metavar="HOST:PORT",
            help="Where to serve REST [default 127.0.0.1:8470; env CATERVA_PUBLISHER_HTTP].",
        ),
    ] = None,
    statedir: Statedir = None,
    poll: Annotated[
        Optional[bool],
        typer.Option(
            "--poll",
            help="Find changes by scanning DIRECTORY every scan_interval instead of "
            "watching filesystem events (for NFS and other filesystems without them) "
            "[env CATERVA_POLL].",
        ),
    ] = None,
    open_files: Annotated[
        Optional[int],
        typer.Option(
            "--open-files",
            metavar="N",
            help="Datasets kept open for serving; memory is about "
            "75 KB each [default 64; env CATERVA_OPEN_FILES].",
        ),
    ] = None,
    pub_id: Annotated[
        Optional[str],
        typer.Option(
            "--pub-id",
            metavar="ID",
            rich_help_panel=security.PANEL,
            help="This publisher's id in MQTT topics [default: generated once; with broker auth, "
            "the MQTT username, which it must equal; env CATERVA_PUB_ID].",
        ),
    ] = None,
    require_token: security.RequireToken = None,
    require_token_file: security.RequireTokenFile = None,
    max_body: security.MaxBody = None,
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
    """Publish DIRECTORY as root NAME. It is announced over MQTT and its chunks served over
    REST; changes to the files are seen and announced as they happen.

    \b
    Examples:
      caterva pub example ./root-example
      caterva pub lab /data/lab --broker mqtt://broker.lan:1883 --http 0.0.0.0:8470
    """
    setup_logging(verbose, log_level, log_format, access_log)
    from caterva.config import setting
    from caterva.publisher import run
    from caterva.service.security import Security

    guard = Security.build(
        require_token=require_token,
        require_token_file=require_token_file,
        max_body=max_body,
        tls_cert=tls_cert,
        tls_key=tls_key,
        ca_file=ca_file,
    )
    [broker] = security.with_broker_credentials(
        [setting("broker", broker)], broker_user, broker_password, ca_file
    )
    run(
        name=name,
        directory=directory,
        broker=broker,
        http=http,
        statedir=statedir,
        pub_id=pub_id,
        security=guard,
        poll=poll,
        open_files=open_files,
    )


@app.command()
def sub(
    broker: Annotated[
        Optional[list[str]],
        typer.Option(
            "--broker",
            metavar="URL",
            help="MQTT broker URL, mqtt://HOST:PORT; repeat to discover on several, the first "
            "being this subscriber's own (its LAN's) [default mqtt://127.0.0.1:1883; "
            "env CATERVA_BROKER, comma-separated].",
        ),
    ] = None,
    http: Annotated[
        Optional[str],
        typer.Option(
            metavar="HOST:PORT",
            help="Where to serve the API [default 127.0.0.1:8471; env CATERVA_SUBSCRIBER_HTTP].",
        ),
    ] = None,
    statedir: Statedir = None,
    cache_size: Annotated[
        Optional[str],
        typer.Option(
            metavar="SIZE",
            help="Disk budget of the chunk cache, e.g. 20GiB "
            "[default 10GiB; env CATERVA_CACHE_SIZE].",
        ),
    ] = None,
    republish: Annotated[
        Optional[bool],
        typer.Option(
            "--republish",
            help="Serve the followed roots to others and announce them "
            "as a mirror [env CATERVA_REPUBLISH].",
        ),
    ] = None,
    republish_broker: Annotated[
        Optional[str],
        typer.Option(
            metavar="URL",
            help="Announce as a mirror on this broker (the LAN's) "
            "[default: the first --broker; env CATERVA_REPUBLISH_BROKER].",
        ),
    ] = None,
    advertise: Annotated[
        Optional[str],
        typer.Option(
            metavar="URL",
            help="The URL a mirror announces [default: the one it is "
            "bound to; env CATERVA_ADVERTISE].",
        ),
    ] = None,
    prefer: Annotated[
        Optional[list[str]],
        typer.Option(
            metavar="PUB_ID_OR_URL",
            help="Read from this source when it is online; "
            "repeatable, first wins [env CATERVA_PREFER, comma-separated].",
        ),
    ] = None,
    trust_file: Annotated[
        Optional[Path],
        typer.Option(
            metavar="PATH",
            help="Signing keys of roots, given up front: `ROOT KEY` "
            "lines; they win over keys met first [env CATERVA_TRUST_FILE].",
        ),
    ] = None,
    pub_id: Annotated[
        Optional[str],
        typer.Option(
            "--pub-id",
            metavar="ID",
            help="A mirror's id, shown as `via ID` downstream [default: the MQTT username, else "
            "generated once and kept in the state directory; env CATERVA_PUB_ID].",
        ),
    ] = None,
    auth: Annotated[
        Optional[bool],
        typer.Option(
            "--auth",
            rich_help_panel=security.PANEL,
            help="Require login (POST /v1/login) and serve each user only the roots granted with "
            "`caterva user grant` [env CATERVA_AUTH].",
        ),
    ] = None,
    users: Annotated[
        Optional[Path],
        typer.Option(
            "--users",
            metavar="PATH",
            rich_help_panel=security.PANEL,
            help="The users database; implies --auth [default: <statedir>/users.db; "
            "env CATERVA_USERS].",
        ),
    ] = None,
    token_ttl: Annotated[
        Optional[str],
        typer.Option(
            "--token-ttl",
            metavar="DURATION",
            rich_help_panel=security.PANEL,
            help="How long a login lasts, e.g. 12h, 30d [default 12h; env CATERVA_TOKEN_TTL].",
        ),
    ] = None,
    source_token: security.SourceToken = None,
    source_token_file: security.SourceTokenFile = None,
    require_token: security.RequireToken = None,
    require_token_file: security.RequireTokenFile = None,
    max_body: security.MaxBody = None,
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
    """Run a subscriber. It discovers roots, follows them, fetches chunks on demand and
    caches them; with --republish, it serves them to the LAN as a mirror.

    \b
    Examples:
      caterva sub                          # serves http://127.0.0.1:8471
      caterva sub --broker mqtt://lan:1883 --broker mqtt://upstream:1883 --cache-size 50GiB
    """
    setup_logging(verbose, log_level, log_format, access_log)
    from caterva.config import setting, setting_list
    from caterva.service.security import Security
    from caterva.subscriber import run

    guard = Security.build(
        auth=auth,
        users=users,
        token_ttl=token_ttl,
        source_token=source_token,
        source_token_file=source_token_file,
        require_token=require_token,
        require_token_file=require_token_file,
        max_body=max_body,
        tls_cert=tls_cert,
        tls_key=tls_key,
        ca_file=ca_file,
    )
    guard.check_republishing(bool(setting("republish", republish)))
    broker = security.with_broker_credentials(
        setting_list("broker", broker), broker_user, broker_password, ca_file
    )
    if republish_broker:
        [republish_broker] = security.with_broker_credentials(
            [republish_broker], broker_user, broker_password, ca_file
        )
    run(
        broker=broker,
        http=http,
        statedir_flag=statedir,
        cache_size=cache_size,
        republish=republish,
        republish_broker=republish_broker,
        advertise=advertise,
        prefer=prefer,
        trust_file=trust_file,
        pub_id=pub_id,
        security=guard,
    )


# client commands (roots, follow, unfollow, list, info, watch, show, download) live in their
# own modules; they register on the same app
commands.register(app)
data.register(app)
users.register(app)  # user add/grant/revoke/list/remove/passwd, login, logout
trust.register(app)  # which signing key each root is bound to


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


def main() -> None:
    # Optional parts of httpx this process never uses, which it imports when they are
    # installed: its own command line (click, pygments, rich.syntax: ~20 ms) and HTTP/2 (h2,
    # ~11 ms; our clients speak HTTP/1.1). A None entry makes the import fail, which both
    # handle as "not installed". Only the `caterva` process: library users keep them.
    for optional in ("httpx._main", "h2"):
        sys.modules.setdefault(optional, None)
    _plain_values_without_pydantic()
    try:
        app()
    except CatervaError as exc:
        from rich.text import Text

        # one line, the message as it is: names in it are data, not markup
        err().print(Text.assemble(("error:", "bold red"), " ", literal(exc.message)))
        sys.exit(exit_code(exc))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
