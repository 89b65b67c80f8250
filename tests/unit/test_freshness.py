"""Freshness (caterva/subscriber/freshness.py) on its own: a follower is only its table of
followed roots here, and the clock is turned by hand."""

from __future__ import annotations

from types import SimpleNamespace

from caterva.protocol.messages import Change
from caterva.subscriber.freshness import HELD, Freshness


def change(seq: int, etag: str, at: float | None, root: str = "r", session: str = "s1") -> Change:
    return Change(
        root=root, path="a.b2nd", op="update", session=session, seq=seq,
        manifest_etag=etag, time=at,
    )  # fmt: skip


def setup() -> tuple[Freshness, dict, list[float]]:
    now = [1000.0]
    etags = {"r": "v0"}
    return Freshness(SimpleNamespace(etags=etags), clock=lambda: now[0]), etags, now


def test_the_lag_runs_from_the_origin_to_the_resync_that_applies_the_change():
    fresh, etags, now = setup()
    fresh.on_change("pub", change(1, "v1", at=998.0))
    assert fresh.events["r"] == 1 and fresh.last_event["r"] == 1000.0
    assert "r" not in fresh.lag  # heard, not yet held
    now[0] = 1001.5
    etags["r"] = "v1"
    fresh.on_event({"root": "r", "event": "resync"})
    assert fresh.lag["r"] == 3.5 and fresh.resyncs["r"] == 1
    assert fresh.origin_time("r", "v1") == 998.0  # what a mirror passes on


def test_a_resync_that_beat_its_event_is_measured_when_the_event_comes():
    fresh, etags, now = setup()
    etags["r"] = "v1"  # resynced on the announcement first
    fresh.on_change("pub", change(1, "v1", at=999.0))
    assert fresh.lag["r"] == 1.0


def test_a_resync_to_a_later_version_applies_the_older_changes_too():
    fresh, etags, now = setup()
    fresh.on_change("pub", change(1, "v1", at=990.0))
    fresh.on_change("pub", change(2, "v2", at=995.0))
    etags["r"] = "v2"
    fresh.on_event({"root": "r", "event": "resync"})
    assert fresh.lag["r"] == 5.0
    assert fresh.origin_time("r", "v1") is None  # forgotten: applied


def test_sequence_gaps_are_counted_per_source_session():
    fresh, _, _ = setup()
    for seq in (1, 2, 5, 6):
        fresh.on_change("pub", change(seq, f"v{seq}", at=None))
    fresh.on_change("pub", change(1, "w1", at=None, session="s2"))  # a new session: no gap
    fresh.on_change("mirror", change(7, "v7", at=None))  # another source's first
    assert fresh.gaps["r"] == 1 and fresh.events["r"] == 6


def test_what_no_one_can_trust_is_not_measured():
    fresh, etags, now = setup()
    fresh.on_change("pub", change(1, "v1", at=None, root="other"))  # not followed
    fresh.on_change("pub", change(1, "v1", at=float("nan")))
    fresh.on_change("pub", change(2, "v2", at=now[0] + 3600))  # a clock ahead: never below 0
    etags["r"] = "v2"
    fresh.on_event({"root": "r", "event": "resync"})
    assert "other" not in fresh.events and fresh.lag["r"] == 0.0
    assert fresh.origin_time("r", "v1") is None


def test_heard_versions_are_bounded_and_unfollow_forgets_the_root():
    fresh, etags, _ = setup()
    for n in range(HELD + 10):
        fresh.on_change("pub", change(n + 1, f"w{n}", at=900.0 + n))
    assert fresh.origin_time("r", "w0") is None and fresh.origin_time("r", f"w{HELD + 9}")
    fresh.on_event({"root": "r", "event": "unfollow"})
    assert not fresh.events and not fresh.gaps and not fresh.last_event
    assert fresh.origin_time("r", f"w{HELD + 9}") is None
