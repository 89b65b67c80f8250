"""The security flags of the service commands (bro, pub, sub), shown in their own help panel.

Each flag is also a setting (``CATERVA_<NAME>`` env, caterva.toml): a password or token is
better given through the environment or a file than on a command line, which ``ps`` shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

PANEL = "Security"


def _option(*names: str, help: str, metavar: str | None = None):
    return typer.Option(*names, help=help, metavar=metavar, rich_help_panel=PANEL)


TlsCert = Annotated[
    Optional[Path],
    _option(
        "--tls-cert",
        metavar="PEM",
        help="Serve TLS with this certificate (chain) [env CATERVA_TLS_CERT].",
    ),
]
TlsKey = Annotated[
    Optional[Path],
    _option("--tls-key", metavar="PEM", help="... and this private key [env CATERVA_TLS_KEY]."),
]
CaFile = Annotated[
    Optional[Path],
    _option(
        "--ca-file",
        metavar="PEM",
        help="Verify TLS servers (sources, an mqtts:// broker) against this CA "
        "[env CATERVA_CA_FILE].",
    ),
]
BrokerUser = Annotated[
    Optional[str],
    _option("--broker-user", metavar="NAME", help="MQTT username [env CATERVA_BROKER_USER]."),
]
BrokerPassword = Annotated[
    Optional[str],
    _option(
        "--broker-password",
        metavar="PASSWORD",
        help="MQTT password; prefer the env CATERVA_BROKER_PASSWORD.",
    ),
]
RequireToken = Annotated[
    Optional[str],
    _option(
        "--require-token",
        metavar="TOKEN",
        help="Answer only requests with Authorization: Bearer TOKEN [env CATERVA_REQUIRE_TOKEN].",
    ),
]
RequireTokenFile = Annotated[
    Optional[Path],
    _option(
        "--require-token-file",
        metavar="PATH",
        help="... or any token in this file, one per line [env CATERVA_REQUIRE_TOKEN_FILE].",
    ),
]
SourceToken = Annotated[
    Optional[list[str]],
    _option(
        "--source-token",
        metavar="URL=TOKEN",
        help="Send TOKEN to the sources under URL (scheme, host and port equal, the path under "
        "URL's) and to no other; repeatable [env CATERVA_SOURCE_TOKEN, comma-separated].",
    ),
]
SourceTokenFile = Annotated[
    Optional[Path],
    _option(
        "--source-token-file",
        metavar="PATH",
        help="... or `URL TOKEN` lines in this file [env CATERVA_SOURCE_TOKEN_FILE].",
    ),
]
MaxBody = Annotated[
    Optional[str],
    _option(
        "--max-body",
        metavar="SIZE",
        help="Refuse request bodies bigger than this with 413, e.g. 4MiB [default 4MiB; "
        "env CATERVA_MAX_BODY].",
    ),
]


def with_broker_credentials(
    urls: list[str], user: str | None, password: str | None, ca_file: Path | None
) -> list[str]:
    """Broker URLs with the MQTT credentials and CA of flags/env folded in (the URL wins)."""
    from caterva.config import setting
    from caterva.mqtt import with_credentials

    user = setting("broker_user", user) or None
    password = setting("broker_password", password) or None
    cafile = setting("ca_file", str(ca_file) if ca_file else None) or None
    if not (user or password or cafile):
        return urls
    return [with_credentials(url, user, password, cafile) for url in urls]
