"""The MQTT topic tree (protocol version 1).

    caterva/v1/pub/<pub_id>/status            retained  online/offline birth and last will
    caterva/v1/pub/<pub_id>/roots/<root>      retained  root announcement; empty = withdrawn
    caterva/v1/pub/<pub_id>/changes/<root>    QoS 1     change events, seq per root and session
    caterva/v1/discover                       QoS 1     anyone asks every source to re-announce

Everything a publisher writes lives under its own ``pub/<pub_id>/`` subtree, so a broker ACL
can confine it there (``caterva/v1/pub/%u/#``, with the pub_id equal to the MQTT username).
"""

from __future__ import annotations

import re
import secrets
import socket
from dataclasses import dataclass

from caterva.protocol.names import check_root

PREFIX = "caterva/v1"
DISCOVER = f"{PREFIX}/discover"
ALL_STATUS = f"{PREFIX}/pub/+/status"
ALL_ROOTS = f"{PREFIX}/pub/+/roots/+"
ALL_CHANGES = f"{PREFIX}/pub/+/changes/+"


def status(pub_id: str) -> str:
    return f"{PREFIX}/pub/{check_pub_id(pub_id)}/status"


def root(pub_id: str, name: str) -> str:
    return f"{PREFIX}/pub/{check_pub_id(pub_id)}/roots/{check_root(name)}"


def roots_of(pub_id: str) -> str:
    """Every root announcement of one source."""
    return f"{PREFIX}/pub/{check_pub_id(pub_id)}/roots/+"


def changes(pub_id: str, name: str) -> str:
    return f"{PREFIX}/pub/{check_pub_id(pub_id)}/changes/{check_root(name)}"


def check_pub_id(pub_id: str) -> str:
    return check_root(pub_id)  # same alphabet: one MQTT-safe segment


def new_pub_id() -> str:
    """``<host>-<random>``: readable in broker logs, unique across hosts and state dirs."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0])[:24].strip("-")
    return check_pub_id(f"{host or 'pub'}-{secrets.token_hex(5)}")


@dataclass(frozen=True)
class Topic:
    """A parsed caterva topic: kind is 'status', 'root', 'changes' or 'discover'."""

    kind: str
    pub_id: str | None = None
    root: str | None = None


def parse(topic: str) -> Topic | None:
    """Parse a topic; None for anything that is not a valid caterva v1 topic."""
    if topic == DISCOVER:
        return Topic("discover")
    parts = topic.split("/")
    if parts[:3] != ["caterva", "v1", "pub"] or len(parts) < 5:
        return None
    try:
        pub_id = check_pub_id(parts[3])
        if len(parts) == 5 and parts[4] == "status":
            return Topic("status", pub_id)
        if len(parts) == 6 and parts[4] in ("roots", "changes"):
            return Topic("root" if parts[4] == "roots" else "changes", pub_id, check_root(parts[5]))
    except ValueError:
        return None
    return None
