"""Source choice in discovery, without sockets: the ranking (preference, mirrors on our own
broker, origin, the rest; fewest hops) and loop exclusion for mirrors."""

from __future__ import annotations

from caterva.protocol.messages import Announcement, Status
from caterva.subscriber.discovery import Directory


def online(d: Directory, pub_id: str, session: str = "s1", broker: int = 0) -> None:
    d.on_status(broker, pub_id, Status("online", session))


def offline(d: Directory, pub_id: str, session: str = "s1", broker: int = 0) -> None:
    d.on_status(broker, pub_id, Status("offline", session))


def announce(
    d: Directory,
    pub_id: str,
    hops: list[str],
    *,
    broker: int = 0,
    session: str = "s1",
    root: str = "demo",
) -> None:
    body = Announcement(
        root=root,
        url=f"http://{pub_id}:1",
        session=session,
        manifest_etag="e1",
        datasets=3,
        origin=hops[0],
        hops=hops,
    )
    d.on_announcement(broker, pub_id, root, body)


def source(d: Directory) -> str | None:
    chosen = d.choose("demo")
    return chosen.pub_id if chosen else None


def lan_and_upstream(d: Directory) -> None:
    """origin o upstream (broker 1); mirrors m1, m3 on the LAN (broker 0), m2 upstream."""
    for pub_id, hops, broker in [
        ("o", ["o"], 1),
        ("m1", ["o", "m1"], 0),
        ("m2", ["o", "m2"], 1),
        ("m3", ["o", "m2", "m3"], 0),
    ]:
        online(d, pub_id, broker=broker)
        announce(d, pub_id, hops, broker=broker)


def test_ranking_mirror_on_own_broker_then_origin_then_the_rest_fewest_hops_first():
    d = Directory()
    lan_and_upstream(d)
    assert source(d) == "m1"  # a LAN mirror, 2 hops, beats m3 (3 hops)
    offline(d, "m1")
    assert source(d) == "m3"
    offline(d, "m3", broker=0)
    assert source(d) == "o"  # then the origin, though it is on the other broker
    offline(d, "o", broker=1)
    assert source(d) == "m2"  # then anything online
    online(d, "m1", session="s2")  # back, but its announcement is of the old session
    assert source(d) == "m2"
    announce(d, "m1", ["o", "m1"], session="s2")
    assert source(d) == "m1"


def test_a_configured_preference_wins_by_pub_id_or_url_first_listed_first():
    d = Directory(prefer=["http://m2:1/", "o"])
    lan_and_upstream(d)
    assert source(d) == "m2"
    offline(d, "m2", broker=1)
    assert source(d) == "o"
    offline(d, "o", broker=1)
    assert source(d) == "m1"


def test_a_late_will_of_an_older_session_does_not_hide_a_source():
    d = Directory()
    online(d, "o", session="new")
    announce(d, "o", ["o"], session="new")
    offline(d, "o", session="old")
    assert source(d) == "o"
    offline(d, "o", session="new")
    assert source(d) is None


def test_listeners_hear_the_choice_change():
    d = Directory()
    heard = []
    d.listeners.append(lambda root, offer: heard.append(offer.pub_id if offer else None))
    online(d, "o", broker=1)
    announce(d, "o", ["o"], broker=1)
    online(d, "m1")
    announce(d, "m1", ["o", "m1"])
    offline(d, "m1")
    assert heard == ["o", "m1", "o"]  # a status alone, without an announcement, says nothing


def test_a_mirror_never_reads_through_itself_nor_hears_itself():
    d = Directory(self_id="a")
    online(d, "o")
    announce(d, "o", ["o"])
    online(d, "d")
    announce(d, "d", ["o", "a", "d"])  # d reads through us: never a source for us
    online(d, "a")
    announce(d, "a", ["o", "a"])  # our own announcement, heard back
    assert [o.pub_id for o in d.offers("demo")] == ["d", "o"]
    assert source(d) == "o"
    offline(d, "o")
    assert source(d) is None  # better none than a cycle


def test_two_mirrors_that_pick_each_other_settle_without_a_loop():
    """Both mirrors see each other on the LAN at the same moment, every round: the worst case.
    Each announces the chain it reads through; the exchange must reach a fixed point."""
    mirrors = {"a": Directory(self_id="a"), "d": Directory(self_id="d")}
    for d in mirrors.values():
        online(d, "o", broker=1)
        announce(d, "o", ["o"], broker=1)
    for me, d in mirrors.items():
        online(d, "d" if me == "a" else "a")

    def chain(me: str) -> list[str]:
        return [*mirrors[me].choose("demo").announcement.hops, me]

    history = []
    for _ in range(8):
        chains = {me: chain(me) for me in mirrors}  # both decide, then both announce
        history.append(chains)
        if len(history) > 1 and history[-2] == chains:
            break
        for me, hops in chains.items():
            other = "d" if me == "a" else "a"
            announce(mirrors[other], me, hops)
    assert history[-1] == {"a": ["o", "d", "a"], "d": ["o", "d"]}, history
    assert len(history) <= 6
    for hops in history[-1].values():
        assert len(hops) == len(set(hops))


def test_subscribers_spread_over_equivalent_mirrors():
    """Twelve subscribers of a LAN with three equally good mirrors: ties are broken per
    subscriber (rendezvous), so every mirror is chosen by some, and each subscriber keeps its
    choice when the announcements come again."""
    chosen = []
    for n in range(12):
        d = Directory(seed=f"subscriber-{n}")
        online(d, "o", broker=1)
        announce(d, "o", ["o"], broker=1)
        for mirror in ("m1", "m2", "m3"):
            online(d, mirror)
            announce(d, mirror, ["o", mirror])
        first = source(d)
        for mirror in ("m3", "m1", "m2"):
            announce(d, mirror, ["o", mirror])
        assert source(d) == first
        chosen.append(first)
    assert set(chosen) == {"m1", "m2", "m3"}, chosen


def test_http_has_the_last_word_on_liveness():
    """A source said online that does not answer is demoted at once; one said offline that
    answers is used; with neither online, every source is still a candidate to try."""
    d = Directory()
    for pub_id, hops in (("o", ["o"]), ("m1", ["o", "m1"])):
        online(d, pub_id)
        announce(d, pub_id, hops)
    assert source(d) == "m1"
    m1 = d.choose("demo")
    d.answered(m1, False)
    assert source(d) == "o" and d.offers("demo")[0].learned == "probe"
    offline(d, "o")  # a stale or forged offline for a source that answers
    assert source(d) is None
    assert [o.pub_id for o in d.candidates("demo")] == ["m1", "o"]  # both tried, best first
    d.answered(next(o for o in d.offers("demo") if o.pub_id == "o"), True)
    assert source(d) == "o"


def test_presence_not_heard_of_for_a_while_or_over_a_broken_link_is_probed():
    """A status is believed for presence_ttl without news, or not at all with our link to
    its broker down; then what a probe shows stands, however old, until MQTT has news. A
    repeat of the same status (a retained copy heard again) is no news."""
    now = [1000.0]
    links = {0: True}
    d = Directory(presence_ttl=60)
    d.clock, d.linked = (lambda: now[0]), links.__getitem__
    online(d, "o")
    announce(d, "o", ["o"])
    assert d.unheard() == set()
    links[0] = False  # our broker is gone: its word cannot be trusted
    assert d.unheard() == {("o", "http://o:1")}
    links[0] = True
    now[0] += 61  # no news for longer than presence_ttl
    assert d.unheard() == {("o", "http://o:1")}
    d.probed("o", "http://o:1", False)
    now[0] += 3600  # the probe's word lasts while MQTT has nothing new
    online(d, "o")  # the same status again: no news
    (offer,) = d.offers("demo")
    assert (offer.online, offer.learned) == (False, "probe") and source(d) is None
    first = offer.since
    d.probed("o", "http://o:1", False)
    assert d.offers("demo")[0].since == first  # still what was learned then
    d.probed("o", "http://o:1", True)
    assert source(d) == "o" and d.offers("demo")[0].since > first
    d.probed("o", "http://o:1", False)
    online(d, "o", session="s2")  # a new birth is news: the broker's word again
    announce(d, "o", ["o"], session="s2")
    (offer,) = d.offers("demo")
    assert (offer.online, offer.learned) == (True, "broker") and d.unheard() == set()


def test_a_probe_speaks_for_every_root_the_source_offers_there():
    d = Directory()
    online(d, "m")
    for root in ("a", "b"):
        announce(d, "m", ["o", "m"], root=root)
    d.probed("m", "http://m:1", False)
    assert [d.offers(root)[0].online for root in ("a", "b")] == [False, False]
    d.probed("m", "http://elsewhere:1", True)  # not where it announced them
    assert [d.offers(root)[0].online for root in ("a", "b")] == [False, False]
