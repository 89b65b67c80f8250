"""`caterva sub` settings from flags, env and caterva.toml, with several brokers and republishing
(no sockets: binding and serving are replaced)."""

from __future__ import annotations

import pytest

import caterva.subscriber
from caterva.errors import BadRequest

NAMES = (
    "BROKER",
    "REPUBLISH",
    "REPUBLISH_BROKER",
    "ADVERTISE",
    "PREFER",
    "STATEDIR",
    "SUBSCRIBER_HTTP",
    "CACHE_SIZE",
)


@pytest.fixture
def built(monkeypatch, tmp_path):
    """run(**flags) -> the SubscriberSettings it would serve with."""
    monkeypatch.setenv("CATERVA_CONFIG", "/nonexistent")
    for name in NAMES:
        monkeypatch.delenv(f"CATERVA_{name}", raising=False)
    got = []
    monkeypatch.setattr(caterva.subscriber.runner, "bind", lambda host, port: None)
    monkeypatch.setattr(caterva.subscriber.runner, "url_of", lambda sock, scheme="http": "")
    monkeypatch.setattr(caterva.subscriber.runner, "run", lambda app, sock, **kw: None)
    monkeypatch.setattr("caterva.subscriber.app.create_app", lambda s, url: got.append(s))

    def build(broker=None, **flags):
        caterva.subscriber.run(broker, None, tmp_path / "state", None, **flags)
        return got.pop()

    return build


def test_defaults_are_one_broker_and_no_republishing(built):
    s = built()
    assert (s.brokers, s.republish, s.republish_broker, s.advertise, s.prefer) == (
        ("mqtt://127.0.0.1:1883",),
        False,
        "",
        "",
        (),
    )


def test_flags_env_and_config_file(built, monkeypatch, tmp_path):
    s = built(
        ["mqtt://lan:1883", "mqtt://up:1883"],
        republish=True,
        prefer=["m1", "http://m2:1"],
        advertise="http://me:8471/",
    )
    assert (s.brokers, s.republish, s.prefer, s.advertise) == (
        ("mqtt://lan:1883", "mqtt://up:1883"),
        True,
        ("m1", "http://m2:1"),
        "http://me:8471",
    )

    monkeypatch.setenv("CATERVA_BROKER", "mqtt://lan:1883, mqtt://up:1883")
    monkeypatch.setenv("CATERVA_REPUBLISH", "yes")
    monkeypatch.setenv("CATERVA_PREFER", "m1,http://m2:1")
    s = built()
    assert (s.brokers, s.republish, s.prefer) == (
        ("mqtt://lan:1883", "mqtt://up:1883"),
        True,
        ("m1", "http://m2:1"),
    )
    assert built(["mqtt://only:1883"]).brokers == ("mqtt://only:1883",)  # a flag wins

    for name in NAMES:
        monkeypatch.delenv(f"CATERVA_{name}", raising=False)
    config = tmp_path / "lists.toml"
    config.write_text(
        'broker = ["mqtt://a:1", "mqtt://b:2"]\nrepublish = true\n'
        'republish_broker = "mqtt://lan:3"\n'
    )
    monkeypatch.setenv("CATERVA_CONFIG", str(config))
    s = built()
    assert (s.brokers, s.republish, s.republish_broker) == (
        ("mqtt://a:1", "mqtt://b:2"),
        True,
        "mqtt://lan:3",
    )


@pytest.mark.parametrize(
    "flags",
    [
        {"broker": ["mqtt://ok:1", "http://nope"]},
        {"republish_broker": "mqtt://bad:port"},
        {"advertise": "lan-host:8471"},
    ],
)
def test_bad_input_is_a_usage_error_before_anything_starts(built, flags):
    with pytest.raises(BadRequest):
        built(**flags)
