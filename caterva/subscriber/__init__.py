"""``caterva sub``: discover roots, follow them, fetch chunks on demand, cache, serve; with
``--republish``, also announce them to the LAN as a mirror (caterva.subscriber.mirror)."""

from __future__ import annotations

import os
from pathlib import Path

from caterva.config import (
    listen_address,
    lock_statedir,
    parse_duration,
    parse_size,
    setting,
    setting_list,
    statedir,
)
from caterva.errors import BadRequest
from caterva.mqtt import BrokerURL
from caterva.protocol.names import check_root
from caterva.protocol.topics import check_pub_id
from caterva.service import runner
from caterva.service.security import Security
from caterva.subscriber import upstream
from caterva.subscriber.settings import SubscriberSettings
from caterva.subscriber.trust import read_trust_file


def run(
    broker: list[str] | None,
    http: str | None,
    statedir_flag: Path | None,
    cache_size: str | None,
    *,
    republish: bool | None = None,
    republish_broker: str | None = None,
    advertise: str | None = None,
    prefer: list[str] | None = None,
    trust_file: Path | None = None,
    pub_id: str | None = None,
    security: Security | None = None,
    metrics_address: str | None = None,
) -> None:
    upstream.read_in_big_pieces()
    host, port = listen_address("subscriber_http", http)
    brokers = tuple(setting_list("broker", broker))
    if not brokers:
        raise BadRequest("no broker given: use --broker mqtt://HOST:PORT")
    settings = SubscriberSettings(
        brokers=brokers,
        host=host,
        port=port,
        statedir=statedir(statedir_flag, "subscriber"),
        cache_size=parse_size(setting("cache_size", cache_size)),
        republish=setting("republish", republish),
        republish_broker=setting("republish_broker", republish_broker),
        advertise=setting("advertise", advertise).rstrip("/"),
        prefer=tuple(setting_list("prefer", prefer)),
        pin=tuple(check_root(root) for root in setting_list("pin")),
        pin_rate=parse_size(setting("pin_rate")),
        trusted=read_trust_file(path) if (path := setting("trust_file", trust_file)) else {},
        pub_id=setting("pub_id", pub_id),
        presence_ttl=parse_duration(setting("presence_ttl")),
        security=security or Security(),
    )
    for url in (*settings.brokers, settings.republish_broker):
        if url:
            BrokerURL.checked(url)  # a malformed URL is a usage error now, not a retry loop later
    if settings.pub_id:
        check_pub_id(settings.pub_id)
        username = BrokerURL.parse(settings.republish_broker or brokers[0]).username
        if username and settings.pub_id != username:  # the broker's ACL is per username
            raise BadRequest(
                f"--pub-id {settings.pub_id!r} differs from the MQTT username "
                f"{username!r}: with broker auth a mirror may write only under it"
            )
    if settings.advertise and not settings.advertise.startswith(("http://", "https://")):
        raise BadRequest(f"invalid --advertise {settings.advertise!r}: use http://HOST:PORT")
    lock = lock_statedir(settings.statedir, "subscriber")  # held while we serve
    try:
        sock = runner.bind(host, port)
        from caterva.service import metrics

        apart = metrics.bind(metrics_address)  # --metrics: without auth, on its own address
        from caterva.subscriber.app import create_app

        url = runner.url_of(sock, settings.security.scheme)
        app = create_app(settings, url=url)
        metrics.listen_apart(app, apart)
        runner.run(app, sock, tls=settings.security.tls)
    finally:
        os.close(lock)
