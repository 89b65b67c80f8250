"""How fresh each followed root is: change events heard, sequence gaps, resyncs, when the last
event came, and the freshness lag, for /metrics and ``caterva status``.

The freshness lag of a change is the time from the origin seeing it (``Change.time``, set by
the publisher's scan and passed on unchanged by mirrors) to this subscriber holding the
manifest that includes it. Events are hints (follower.py): an event names the manifest etag
after its change, and that change is applied when a resync lands on that etag (or already
was, when the resync beat the event). Both clocks are wall clocks: on machines whose clocks
disagree the lag is off by as much (it is never shown below 0).

Only followed roots are tracked: anyone on the broker may send events for any name.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable

from caterva.protocol.messages import Change
from caterva.subscriber.follower import Follower

HELD = 64  # versions of a root heard of but not yet applied, remembered (the oldest go)


class Freshness:
    def __init__(self, follower: Follower, clock: Callable[[], float] = time.time) -> None:
        self.follower = follower
        self.clock = clock
        self.events = Counter[str]()  # root -> change events heard
        self.gaps = Counter[str]()  # root -> missing runs of seq in a source's session
        self.resyncs = Counter[str]()  # root -> resyncs that moved the root on
        self.last_event: dict[str, float] = {}  # root -> when its last change event came
        self.lag: dict[str, float] = {}  # root -> lag of the last change applied (seconds)
        self._seq: dict[tuple[str, str], tuple[str, int]] = {}  # (root, pub_id) -> session, seq
        self._heard: dict[str, dict[str, float]] = {}  # root -> etag -> origin time
        self._applied: dict[str, tuple[str, float]] = {}  # root -> (etag, origin time)

    def on_change(self, pub_id: str, change: Change) -> None:
        """Every well-formed change event heard (inbox.py)."""
        root = change.root
        if root not in self.follower.etags:
            return
        self.events[root] += 1
        self.last_event[root] = self.clock()
        last = self._seq.get((root, pub_id))
        if last is not None and last[0] == change.session and change.seq > last[1] + 1:
            self.gaps[root] += 1
        if last is None or last[0] != change.session or change.seq > last[1]:
            self._seq[(root, pub_id)] = (change.session, change.seq)
        at = change.time
        if at is None or not math.isfinite(at):
            return
        if change.manifest_etag == self.follower.etags[root]:  # a resync got there first
            if self._applied.get(root, ("", 0.0))[0] != change.manifest_etag:
                self._apply(root, change.manifest_etag, at)
            return
        heard = self._heard.setdefault(root, {})
        heard[change.manifest_etag] = min(at, heard.get(change.manifest_etag, at))
        if len(heard) > HELD:
            del heard[next(iter(heard))]

    def on_event(self, event: dict) -> None:
        """An Events listener: what the follower did."""
        root, kind = event["root"], event["event"]
        if kind == "resync":
            self.resyncs[root] += 1
            etag = self.follower.etags.get(root)
            heard = self._heard.get(root, {})
            at = heard.pop(etag, None) if etag else None
            if at is not None:
                self._apply(root, etag, at)
                for other in [e for e, t in heard.items() if t <= at]:  # older: applied too
                    del heard[other]
        elif kind == "unfollow":
            for table in (self.events, self.gaps, self.resyncs, self.last_event, self.lag):
                table.pop(root, None)
            for table in (self._heard, self._applied):
                table.pop(root, None)
            for key in [k for k in self._seq if k[0] == root]:
                del self._seq[key]

    def _apply(self, root: str, etag: str, at: float) -> None:
        self.lag[root] = max(0.0, self.clock() - at)
        self._applied[root] = (etag, at)

    def origin_time(self, root: str, etag: str | None) -> float | None:
        """When the origin made the version ``etag`` of ``root``, if an event said so: what a
        mirror passes on in its own change events."""
        applied = self._applied.get(root)
        if applied is not None and applied[0] == etag:
            return applied[1]
        return self._heard.get(root, {}).get(etag or "")
