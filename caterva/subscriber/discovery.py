"""Discover: which roots exist, which sources serve each, and whether they are online.

Built only from MQTT hints (retained status and announcements, parsed by inbox.py), heard on
one or more brokers; the signed REST manifest stays the truth. A status carries the source's
session id, so a late last will from an older connection cannot mark a newer one offline.

Choosing a source for a root (``choose``), among the online offers:

    1. a configured preference (``--prefer PUB_ID_OR_URL``, earlier ones first)
    2. a mirror heard on our own broker (the first one: the LAN's)
    3. the origin
    4. anything else
    ties: fewest hops from the origin, then a rendezvous hash of (this subscriber, root,
    source): each subscriber has its own order among equals, so the subscribers of a LAN spread
    over its mirrors, and each keeps its choice while the set of sources stays the same

Liveness comes from both planes, the newer word winning. MQTT presence is the fast hint; what a
request to a source shows (``answered``) outweighs an older status for PROBE_TRUSTED seconds:
a source that refuses a connection is demoted at once, one that answers is online whatever its
retained status says (a stale or forged "offline", or a last will that died with a broker
node). And a read tries every source (``candidates``: the online ones first) before it fails
as offline.

A status is not believed forever: with our link to the broker it was heard on down, or no
news of it (another state or session; a repeat, such as a retained copy heard again, is none)
for ``presence_ttl`` seconds, a source is ``unheard``: probe.py asks it over HTTP, and what it
answers stands, however old, until the broker has news. So a publisher whose last will died
with a broker node, then the publisher, becomes offline all the same.

A mirror (``self_id`` set) never reads through itself: an offer whose hop chain holds
``self_id`` is never chosen, and its own messages are ignored. Two mirrors that pick each other
at the same moment both see the loop in the other's next announcement and both drop it; to
keep them from picking each other again, and again, the one with the greater pub_id stops
considering the other for as long as that session lasts.

Right after start nothing is known yet, which is not the same as "offline": ``synced`` is set
once the retained hints of our own broker have arrived (the app's start-up barrier), and
whoever needs a source waits for it first.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from caterva.errors import SourceOffline, UnknownRoot
from caterva.protocol.messages import Announcement, Status

log = logging.getLogger("caterva.subscriber")

PROBE_TRUSTED = 30.0  # seconds what a request to a source showed outweighs a trusted status


@dataclass(frozen=True)
class Offer:
    """One source's announcement of a root, as heard on one broker (0 is our own)."""

    pub_id: str
    announcement: Announcement
    online: bool
    broker: int = 0
    learned: str = "broker"  # how ``online`` is known: "broker" (MQTT) or "probe" (HTTP)
    since: float | None = None  # since when (time.time()); None: no word from either plane

    @property
    def url(self) -> str:
        return self.announcement.url

    @property
    def is_origin(self) -> bool:
        return self.pub_id == self.announcement.origin


class Directory:
    def __init__(
        self,
        self_id: str | None = None,
        prefer: Sequence[str] = (),
        seed: str = "",
        presence_ttl: float = math.inf,  # the setting presence_ttl
    ) -> None:
        self.self_id = self_id  # our pub_id when we republish, else None
        self.prefer = [p.rstrip("/") for p in prefer]
        self.seed = seed or self_id or ""  # this subscriber, for the rendezvous of equal sources
        self._status: dict[tuple[int, str], Status] = {}
        self._status_at: dict[tuple[int, str], float] = {}  # when each status was news
        self.presence_ttl = presence_ttl
        self.linked: Callable[[int], bool] = lambda broker: True  # our link to it is up
        self.clock = time.monotonic  # tests turn it
        self._epoch = time.time() - time.monotonic()  # clock() + this: Unix time, to show
        # root -> (broker, pub_id) -> announcement: by root, as every query asks by root
        self._offers: dict[str, dict[tuple[int, str], Announcement]] = {}
        self._yielded: dict[tuple[str, str], str] = {}  # (root, pub_id) -> its session
        # (root, pub_id) -> (session, until) of a source that served something unverifiable:
        # not used again for that root while that session lasts, or until then
        self._distrusted: dict[tuple[str, str], tuple[str, float]] = {}
        # (root, pub_id) -> (answered, when last, since when that is the word in effect)
        self._http: dict[tuple[str, str], tuple[bool, float, float]] = {}
        # called with (root, offer) when the chosen source of a root appears, changes or
        # announces a new manifest: the follower resyncs if the root is followed
        self.listeners: list[Callable[[str, Offer | None], None]] = []
        self.synced = asyncio.Event()

    # --- MQTT input (parsed by caterva/subscriber/inbox.py) --------------------------------

    def on_status(self, broker: int, pub_id: str, status: Status) -> None:
        if pub_id == self.self_id:
            return  # our own birth, heard back
        known = self._status.get((broker, pub_id))
        if status.state == "offline" and known and known.session != status.session:
            return  # the will of an older connection, arriving late
        self._status[(broker, pub_id)] = status
        if known is None or (known.state, known.session) != (status.state, status.session):
            self._status_at[(broker, pub_id)] = self.clock()
        for root in sorted(r for r, by in self._offers.items() if (broker, pub_id) in by):
            self._notify(root)

    def on_announcement(
        self, broker: int, pub_id: str, root: str, announcement: Announcement | None
    ) -> None:
        """``pub_id`` serves ``root`` as announced (None: withdrawn)."""
        if pub_id != self.self_id:  # not our own announcement, heard back
            self._set_offer(broker, pub_id, root, announcement)

    def _set_offer(
        self, broker: int, pub_id: str, root: str, announcement: Announcement | None
    ) -> None:
        if announcement is None:
            by = self._offers.get(root, {})
            by.pop((broker, pub_id), None)
            if not by:
                self._offers.pop(root, None)
        else:
            if self._must_yield(root, pub_id, announcement):
                log.info(
                    "%s and %s read %s from each other; %s yields",
                    self.self_id,
                    pub_id,
                    root,
                    self.self_id,
                )
                self._yielded[(root, pub_id)] = announcement.session
            self._offers.setdefault(root, {})[(broker, pub_id)] = announcement
        self._notify(root)

    def _must_yield(self, root: str, pub_id: str, announcement: Announcement) -> bool:
        """``pub_id`` now reads ``root`` through us while we read it from ``pub_id``: a loop,
        which the greater pub_id of the two breaks for good (see the module docstring)."""
        if self.self_id is None or self.self_id not in announcement.hops:
            return False
        current = self.choose(root)
        return current is not None and current.pub_id == pub_id and self.self_id > pub_id

    def _notify(self, root: str) -> None:
        chosen = self.choose(root)
        for listener in self.listeners:
            listener(root, chosen)

    # --- queries ----------------------------------------------------------------------------

    def online(self, pub_id: str, session: str | None = None, broker: int = 0) -> bool:
        status = self._status.get((broker, pub_id))
        if status is None or status.state != "online":
            return False
        return session is None or status.session == session

    def offers(self, root: str) -> list[Offer]:
        out = []
        now = self.clock()
        for (broker, pub_id), a in sorted(
            self._offers.get(root, {}).items(), key=lambda item: item[0][::-1]
        ):
            online, learned = self.online(pub_id, a.session, broker), "broker"
            since = self._status_at.get((broker, pub_id), -math.inf)
            answered, when, first = self._http.get((root, pub_id), (False, -math.inf, 0.0))
            # the newer word wins: HTTP's, unless MQTT spoke since; for a while only, unless
            # MQTT's cannot be trusted (then HTTP's stands until MQTT has news)
            if when > since and (now - when < PROBE_TRUSTED or not self.trusted(broker, pub_id)):
                online, learned, since = answered, "probe", first
            wall = since + self._epoch if since > -math.inf else None
            out.append(Offer(pub_id, a, online, broker, learned, wall))
        return out

    def trusted(self, broker: int, pub_id: str) -> bool:
        """Is what the broker said of ``pub_id`` still to be believed: our link to it is up,
        and there was news of it within presence_ttl?"""
        heard = self._status_at.get((broker, pub_id), -math.inf)
        return self.linked(broker) and self.clock() - heard < self.presence_ttl

    def unheard(self) -> set[tuple[str, str]]:
        """(pub_id, url) of every source whose presence is not trusted: to probe."""
        return {
            (pub_id, a.url)
            for by in self._offers.values()
            for (broker, pub_id), a in by.items()
            if not self.trusted(broker, pub_id)
        }

    def roots(self) -> list[str]:
        return sorted(self._offers)

    def usable(self, offer: Offer) -> bool:
        """Online, not reading through us, not a mirror we yielded to, not distrusted."""
        return offer.online and self._eligible(offer)

    def _eligible(self, offer: Offer) -> bool:
        if self.self_id is not None and self.self_id in offer.announcement.hops:
            return False
        key = (offer.announcement.root, offer.pub_id)
        session = offer.announcement.session
        if self._yielded.get(key) == session:
            return False
        distrusted, until = self._distrusted.get(key, ("", 0.0))
        return distrusted != session or self.clock() >= until

    def distrust(self, offer: Offer, seconds: float = math.inf) -> None:
        """Stop reading ``offer``'s root from it, for ``seconds`` or while its session lasts."""
        until = self.clock() + seconds
        self._distrusted[(offer.announcement.root, offer.pub_id)] = (
            offer.announcement.session,
            until,
        )
        self._notify(offer.announcement.root)

    def answered(self, offer: Offer, ok: bool) -> None:
        """What a request to ``offer`` showed: for a while, that is whether it is online."""
        if self._record(offer.announcement.root, offer.pub_id, ok):
            if not ok:
                log.info(
                    "source %s (%s) of %s does not answer: trying the others",
                    offer.pub_id,
                    offer.url,
                    offer.announcement.root,
                )
            self._notify(offer.announcement.root)

    def probed(self, pub_id: str, url: str, ok: bool) -> None:
        """What a probe of the source ``pub_id`` at ``url`` showed, for every root it offers
        there (see probe.py)."""
        roots = [
            root
            for root, by in sorted(self._offers.items())
            if any(p == pub_id and a.url == url for (_, p), a in by.items())
        ]
        changed = [root for root in roots if self._record(root, pub_id, ok)]
        if changed:
            log.info(
                "source %s (%s) %s a probe over HTTP: %s",
                pub_id,
                url,
                "answers" if ok else "does not answer",
                "online" if ok else "offline",
            )
        for root in changed:
            self._notify(root)

    def _record(self, root: str, pub_id: str, ok: bool) -> bool:
        """Keep what a request showed; True when that is news (not what was in effect)."""
        now = self.clock()
        brokers = [b for b, p in self._offers.get(root, {}) if p == pub_id]
        news_at = max((self._status_at.get((b, pub_id), -math.inf) for b in brokers), default=0)
        lasting = any(not self.trusted(b, pub_id) for b in brokers)
        before = self._http.get((root, pub_id))
        same = (
            before is not None
            and before[0] == ok
            and before[1] > news_at
            and (lasting or now - before[1] < PROBE_TRUSTED)
        )
        self._http[(root, pub_id)] = (ok, now, before[2] if same else now)
        return not same

    def candidates(
        self, root: str, exclude: frozenset[str] | set[str] = frozenset()
    ) -> list[Offer]:
        """Every source worth a request for ``root``, best first: the online ones, then those
        said to be offline (HTTP has the last word), none of ``exclude``."""
        eligible = [o for o in self.offers(root) if o.pub_id not in exclude and self._eligible(o)]
        return sorted(eligible, key=lambda o: (not o.online, self.rank(o)))

    def origin_key(self, root: str) -> str | None:
        """The signing key the root's origin names in its own announcement, if heard."""
        keys = [o.announcement.key for o in self.offers(root) if o.is_origin and o.announcement.key]
        return keys[0] if keys else None

    def rank(self, offer: Offer) -> tuple:
        """Sort key: smaller is better (see the module docstring)."""
        names = (offer.pub_id, offer.url.rstrip("/"))
        preferred = next((i for i, p in enumerate(self.prefer) if p in names), len(self.prefer))
        if offer.is_origin:
            tier = 1
        else:
            tier = 0 if offer.broker == 0 else 2  # a mirror on our own broker, or elsewhere
        spread = hashlib.blake2b(
            f"{self.seed}\0{offer.announcement.root}\0{offer.pub_id}".encode(), digest_size=8
        ).digest()
        return (preferred, tier, len(offer.announcement.hops), spread, offer.pub_id, offer.broker)

    def choose(self, root: str, exclude: frozenset[str] | set[str] = frozenset()) -> Offer | None:
        """The source to read ``root`` from (not one of the pub_ids in ``exclude``), or None
        when no usable one is online."""
        usable = [o for o in self.offers(root) if self.usable(o) and o.pub_id not in exclude]
        return min(usable, key=self.rank, default=None)

    def source(self, root: str) -> Offer:
        """The chosen source, or the error a reader should get."""
        offer = self.choose(root)
        if offer is None:
            if not self.offers(root):
                raise UnknownRoot(f"no source announces root {root!r}")
            raise SourceOffline(f"every source of root {root!r} is offline")
        return offer
