from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from caterva.config import DEFAULTS, parse_duration
from caterva.service.security import Security


@dataclass(frozen=True)
class SubscriberSettings:
    brokers: tuple[str, ...]  # the first is our own (the LAN's); discovery listens to all
    host: str
    port: int
    statedir: Path
    cache_size: int
    republish: bool = False  # serve and announce the followed roots as a mirror
    republish_broker: str = ""  # where a mirror announces; "" = brokers[0]
    advertise: str = ""  # the URL a mirror announces; "" = the bound URL
    prefer: tuple[str, ...] = ()  # pub_ids or URLs to read from first
    pin: tuple[str, ...] = ()  # roots to follow and keep whole (pins.py)
    pin_rate: int = 0  # bytes/s fetched for pinned roots; 0 = no limit
    trusted: dict[str, str] = field(default_factory=dict)  # root -> key given up front
    pub_id: str = ""  # a mirror's id; "" = the MQTT username, else one kept in the state
    # seconds an MQTT status is believed without news (then probed: probe.py)
    presence_ttl: float = parse_duration(DEFAULTS["presence_ttl"])
    security: Security = Security()  # accounts (--auth), source tokens, HTTPS (service/security)
