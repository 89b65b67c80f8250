"""The publisher: ``caterva pub NAME DIR`` announces DIR as root NAME over MQTT and serves its
chunks over REST.

    settings   flags/env/config -> Settings (validated)
    store      SQLite state: stable pub_id, last announced state per dataset (digest cache)
    catalog    scan DIR -> DatasetInfo per file; diff scans -> create/update/delete
    plainfiles plain file -> chunked frame in the statedir (streamed)
    announce   birth/will, retained announcement, change events, discover
    api        REST routes (caterva.protocol.rest); httperrors: JSON errors; stats: counters
    app        create_app(settings): lifespan wiring and the directory watcher
"""

from __future__ import annotations

import os
from dataclasses import replace

from services.publisher.settings import Settings


def create_app(settings: Settings):
    from services.publisher.app import create_app as build

    return build(settings)


def run(
    *,
    name: str,
    directory: str | os.PathLike,
    broker: str | None = None,
    http: str | None = None,
    statedir: str | os.PathLike | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; bad input raises a CatervaError before anything starts."""
    from services import serve
    from services.publisher.settings import advertised_url, listen_address
    from services.publisher.store import Store

    settings = Settings.build(name=name, directory=directory, broker=broker, statedir=statedir,
                              url="")
    Store.open(settings.statedir).close()  # a locked or too-new state fails here, clearly
    sock = serve.bind(*listen_address(http))
    app = create_app(replace(settings, url=advertised_url(sock)))
    serve.run(app, sock)


__all__ = ["Settings", "create_app", "run"]
