"""Discover: which roots exist, which sources serve each, and whether they are online.

Built only from MQTT hints (retained status and announcements); the REST manifest stays the
truth. A status carries the source's session id, so a late last will from an older
connection cannot mark a newer one offline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from caterva.errors import ProtocolError, SourceOffline, UnknownRoot
from caterva.protocol import topics
from caterva.protocol.messages import Announcement, Status

log = logging.getLogger("caterva.subscriber")


@dataclass(frozen=True)
class Offer:
    """One source's announcement of a root, with whether that source is online now."""

    pub_id: str
    announcement: Announcement
    online: bool

    @property
    def url(self) -> str:
        return self.announcement.url


class Directory:
    def __init__(self) -> None:
        self._status: dict[str, Status] = {}
        self._offers: dict[tuple[str, str], Announcement] = {}
        # called with (root, offer) when the chosen source of a root appears, changes or
        # announces a new manifest: the follower resyncs if the root is followed
        self.listeners: list[Callable[[str, Offer | None], None]] = []

    # --- MQTT input ------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        parsed = topics.parse(topic)
        if parsed is None or parsed.kind not in ("status", "root"):
            return
        try:
            if parsed.kind == "status":
                self._on_status(parsed.pub_id, Status.from_bytes(payload))
            elif not payload:
                self._set_offer(parsed.pub_id, parsed.root, None)
            else:
                announcement = Announcement.from_bytes(payload)
                if announcement.root != parsed.root:
                    raise ProtocolError("announcement names another root than its topic")
                self._set_offer(parsed.pub_id, parsed.root, announcement)
        except ProtocolError as exc:
            log.warning("ignoring a bad message on %s: %s", topic, exc)

    def _on_status(self, pub_id: str, status: Status) -> None:
        known = self._status.get(pub_id)
        if status.state == "offline" and known and known.session != status.session:
            return  # the will of an older connection, arriving late
        self._status[pub_id] = status
        for root in [r for (p, r) in self._offers if p == pub_id]:
            self._notify(root)

    def _set_offer(self, pub_id: str, root: str, announcement: Announcement | None) -> None:
        if announcement is None:
            self._offers.pop((pub_id, root), None)
        else:
            self._offers[(pub_id, root)] = announcement
        self._notify(root)

    def _notify(self, root: str) -> None:
        chosen = self.choose(root)
        for listener in self.listeners:
            listener(root, chosen)

    # --- queries ----------------------------------------------------------------------------

    def online(self, pub_id: str, session: str | None = None) -> bool:
        status = self._status.get(pub_id)
        if status is None or status.state != "online":
            return False
        return session is None or status.session == session

    def offers(self, root: str) -> list[Offer]:
        return [
            Offer(pub_id, a, self.online(pub_id, a.session))
            for (pub_id, r), a in sorted(self._offers.items())
            if r == root
        ]

    def roots(self) -> list[str]:
        return sorted({r for (_, r) in self._offers})

    def choose(self, root: str) -> Offer | None:
        """The source to read ``root`` from: an online one, the fewest hops from the origin."""
        online = [o for o in self.offers(root) if o.online]
        if not online:
            return None
        return min(online, key=lambda o: (len(o.announcement.hops), o.pub_id))

    def source(self, root: str) -> Offer:
        """The chosen source, or the error a reader should get."""
        offer = self.choose(root)
        if offer is None:
            if not self.offers(root):
                raise UnknownRoot(f"no source announces root {root!r}")
            raise SourceOffline(f"every source of root {root!r} is offline")
        return offer
