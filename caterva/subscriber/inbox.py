"""Everything the subscriber hears over MQTT, parsed once and handed to the part it is for.

    caterva/v1/pub/<id>/status          -> Directory.on_status        who is online
    caterva/v1/pub/<id>/roots/<root>    -> Directory.on_announcement  who serves which root
    caterva/v1/pub/<id>/changes/<root>  -> Follower.on_change         a hint: resync
    caterva/v1/discover                 -> ours, heard back           the start-up barrier

Nothing from the network is trusted: a topic that is not caterva's, or a payload that does not
decode, is one warning line and nothing else. On each (re)connect the subscriber asks every
source to re-announce and resyncs what it follows: events may have been missed meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from caterva.errors import ProtocolError
from caterva.mqtt import Bus
from caterva.protocol import topics
from caterva.protocol.messages import Announcement, Change, Discover, Status
from caterva.subscriber.discovery import Directory
from caterva.subscriber.follower import Follower

log = logging.getLogger("caterva.subscriber")

PATTERNS = (topics.ALL_STATUS, topics.ALL_ROOTS, topics.ALL_CHANGES, topics.DISCOVER)


class Inbox:
    def __init__(
        self,
        directory: Directory,
        follower: Follower,
        name: str,
        heard: Callable[[str, Change], None] = lambda pub_id, change: None,
    ) -> None:
        self.directory, self.follower = directory, follower
        self.name = name  # our MQTT client name: the sender of our discover
        self.heard = heard  # told of every change event first (freshness.py)

    def listen(self, bus: Bus, broker: int) -> None:
        """Take ``bus``'s messages (broker 0: our own) from now on."""
        for pattern in PATTERNS:  # one SUBSCRIBE for all (see Bus): the barrier relies on it
            bus.subscribe(pattern, partial(self.on_message, broker))
        bus.on_connect(partial(self._connected, bus))

    async def _connected(self, bus: Bus) -> None:
        await bus.publish(topics.DISCOVER, Discover(sender=self.name).to_bytes())
        await self.follower.resync_all()

    async def on_message(self, broker: int, topic: str, payload: bytes) -> None:
        parsed = topics.parse(topic)
        if parsed is None:
            return
        try:
            if parsed.kind == "discover":
                # our own discover, heard back, comes after every retained message our
                # subscriptions matched: the start-up barrier
                if broker == 0 and Discover.from_bytes(payload).sender == self.name:
                    self.directory.synced.set()
            elif parsed.kind == "status":
                self.directory.on_status(broker, parsed.pub_id, Status.from_bytes(payload))
            elif parsed.kind == "root":
                announcement = Announcement.from_bytes(payload) if payload else None
                if announcement is not None and announcement.root != parsed.root:
                    raise ProtocolError("announcement names another root than its topic")
                self.directory.on_announcement(broker, parsed.pub_id, parsed.root, announcement)
            else:
                change = Change.from_bytes(payload)
                if change.root != parsed.root:
                    raise ProtocolError("change event names another root than its topic")
                self.heard(parsed.pub_id, change)
                await self.follower.on_change(parsed.pub_id, change)
        except ProtocolError as exc:
            log.warning("ignoring a bad message on %s: %s", topic, exc)
