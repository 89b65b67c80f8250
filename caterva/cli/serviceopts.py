"""What the service commands (bro, pub, sub) share: logging, broker and state directory
options, and setting up logging from them."""

# No `from __future__ import annotations` here: typer evaluates annotations at start-up.

from pathlib import Path
from typing import Annotated, Optional

import typer


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
Metrics = Annotated[
    Optional[str],
    typer.Option(
        "--metrics",
        metavar="HOST:PORT",
        help="Also serve /metrics (Prometheus) here, without auth: bind an address only the "
        "scraper reaches [default: off; env CATERVA_METRICS].",
    ),
]
