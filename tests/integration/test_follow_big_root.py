"""A subscriber following a root of a few thousand datasets (CI-sized stand-in for 100,000)
keeps answering other requests meanwhile: what grows with the root runs off its event loop.

The subscriber runs in this process (real HTTP on loopback, real SQLite, a real publisher and
broker as children) so that storing the datasets can be held at its first row until a
concurrent request has been answered: if storing ran on the event loop, that request could
not be answered, whatever the timing.
"""

from __future__ import annotations

import threading

import httpx
import uvicorn

from caterva import Client, sqlite
from caterva.subscriber.app import create_app
from caterva.subscriber.settings import SubscriberSettings
from caterva.subscriber.state import State
from tests.conftest import free_port
from tests.integration.test_publisher_scale import build_root

DATASETS = 3000


def test_a_subscriber_answers_while_it_follows_a_big_root(spawn, tmp_path, monkeypatch):
    paths = build_root(tmp_path / "root", DATASETS)
    broker = spawn("bro", "--port", str(free_port()), "--statedir", str(tmp_path / "bro")).url
    spawn("pub", "big", str(tmp_path / "root"), "--broker", broker, "--http", "127.0.0.1:0",
          "--statedir", str(tmp_path / "pub"))  # fmt: skip

    # the first dataset row stored waits until the concurrent request below was answered
    storing, answered = threading.Event(), threading.Event()

    def hold() -> None:
        if not storing.is_set():
            storing.set()
            answered.wait(10)

    real_connect = sqlite.connect

    def connect(*args, **kwargs):
        db = real_connect(*args, **kwargs)
        db.create_function("hold", 0, hold)
        return db

    monkeypatch.setattr(sqlite, "connect", connect)
    statedir = tmp_path / "sub"
    statedir.mkdir()
    State(statedir / "state.db").db.execute(
        "CREATE TRIGGER hold AFTER INSERT ON datasets BEGIN SELECT hold(); END"
    )

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = SubscriberSettings(
        brokers=(broker,), host="127.0.0.1", port=port, statedir=statedir, cache_size=2**30
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, url), host="127.0.0.1", port=port, log_level="error")
    )
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    try:
        with Client(url) as client:
            while not server.started:
                threading.Event().wait(0.01)  # uvicorn has no other readiness signal in-process
            while not any(r.name == "big" and r.online for r in client.roots()):
                threading.Event().wait(0.02)  # the announcement comes over MQTT
            followed: list[int] = []
            following = threading.Thread(target=lambda: followed.append(client.follow("big")))
            following.start()
            assert storing.wait(60), "the follow never started storing its datasets"
            health = httpx.get(f"{url}/v1/health", timeout=5)  # while storing is held
            assert health.status_code == 200 and following.is_alive()
            answered.set()
            following.join(60)
            assert followed == [DATASETS]
            assert [d.path for d in client.list("big")] == paths
    finally:
        answered.set()
        server.should_exit = True
        serving.join(30)
