"""The publisher: ``caterva pub NAME DIR`` announces DIR as root NAME over MQTT and serves its
chunks over REST.

    settings   flags/env/config -> Settings (validated)
    store      SQLite state: stable pub_id, last announced state per dataset (digest cache)
    catalog    scan DIR -> DatasetInfo per file; diff scans -> create/update/delete
    plainfiles plain file -> chunked frame in the statedir (streamed)
    announce   birth/will, retained announcement, change events, discover
    api        REST routes (caterva.protocol.rest); stats: counters; metrics: /metrics
    app        create_app(settings): lifespan wiring and the directory watcher
"""

from __future__ import annotations

import os
from dataclasses import replace

from caterva.publisher.settings import Settings


def create_app(settings: Settings):
    from caterva.publisher.app import create_app as build

    return build(settings)


def run(
    *,
    name: str,
    directory: str | os.PathLike,
    broker: str | None = None,
    http: str | None = None,
    statedir: str | os.PathLike | None = None,
    pub_id: str | None = None,
    security=None,
    poll: bool | None = None,
    open_files: int | None = None,
    metrics_address: str | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; bad input raises a CatervaError before anything starts.
    ``security`` (caterva.service.security.Security): service tokens to require, HTTPS.
    ``metrics_address``: also serve /metrics there, without auth (caterva.service.metrics)."""
    from caterva.config import listen_address
    from caterva.publisher.settings import advertised_url
    from caterva.publisher.store import Store
    from caterva.service import auth, metrics, runner
    from caterva.service.http import limit_bodies
    from caterva.service.security import Security

    security = security or Security()
    settings = Settings.build(
        name=name,
        directory=directory,
        broker=broker,
        statedir=statedir,
        url="",
        pub_id=pub_id,
        poll=poll,
        open_files=open_files,
    )
    Store.open(settings.statedir).close()  # a locked or too-new state fails here, clearly
    sock = runner.bind(*listen_address("publisher_http", http))
    apart = metrics.bind(metrics_address)
    app = create_app(replace(settings, url=advertised_url(sock, security.scheme)))
    metrics.listen_apart(app, apart)
    auth.require_tokens(app, security.require_tokens)
    limit_bodies(app, security.max_body)
    runner.run(app, sock, tls=security.tls)


__all__ = ["Settings", "create_app", "run"]
