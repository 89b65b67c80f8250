"""The service commands, ``caterva bro | pub | sub``: each parses its options (flags, then
``CATERVA_*``, then caterva.toml), sets up logging and runs its daemon, imported only then."""

# No `from __future__ import annotations` here: typer evaluates annotations at start-up.

from pathlib import Path
from typing import Annotated, Optional

import typer

from caterva.cli import security
from caterva.cli.serviceopts import (
    AccessLog,
    Broker,
    LogFormat,
    LogLevel,
    Metrics,
    Statedir,
    Verbose,
    setup_logging,
)


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
    metrics: Metrics = None,
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
        metrics=metrics,
    )


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
    metrics: Metrics = None,
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
        metrics_address=metrics,
    )


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
    metrics: Metrics = None,
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
        metrics_address=metrics,
    )


def register(app: typer.Typer) -> None:
    for command in (bro, pub, sub):
        app.command()(command)
