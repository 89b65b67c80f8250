"""``caterva sub``: discover roots, follow them, fetch chunks on demand, cache, serve."""

from __future__ import annotations

from pathlib import Path

from caterva.config import parse_hostport, parse_size, setting, statedir
from services import serve
from services.subscriber.settings import SubscriberSettings


def run(broker: str | None, http: str | None, statedir_flag: Path | None, cache_size: str | None) -> None:
    host, port = parse_hostport(setting("subscriber_http", http), 8471)
    settings = SubscriberSettings(
        broker=setting("broker", broker),
        host=host,
        port=port,
        statedir=statedir(statedir_flag, "subscriber"),
        cache_size=parse_size(setting("cache_size", cache_size)),
    )
    sock = serve.bind(host, port)
    from services.subscriber.app import create_app

    serve.run(create_app(settings, url=serve.url_of(sock)), sock)
