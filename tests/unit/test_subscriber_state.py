"""The subscriber's state keeps each dataset as its info's JSON and etag, parsed only when used."""

from __future__ import annotations

import sqlite3

from caterva.protocol.metadata import DatasetInfo
from caterva.subscriber.state import Dataset, State
from tests.unit.test_cache import make_info


def test_datasets_are_read_back_without_parsing_their_infos(tmp_path, monkeypatch):
    state = State(tmp_path / "state.db")
    state.follow("r", 0)
    infos = [make_info(f"d/{n:02d}.bin", 2, seed=n)[0] for n in range(50)]
    ids = state.put_datasets("r", infos)
    decoded = []
    real_decode = DatasetInfo.from_dict
    monkeypatch.setattr(
        DatasetInfo, "from_dict", lambda body: decoded.append(1) or real_decode(body)
    )
    held = state.datasets("r")
    assert [(d.id, d.path, d.etag) for d in held] == [(ids[i.path], i.path, i.etag) for i in infos]
    assert decoded == []
    assert held[3].info == infos[3]  # decoded when used
    state.close()


def test_a_state_from_before_dataset_etags_keeps_its_datasets(tmp_path):
    state = State(tmp_path / "state.db")
    state.follow("r", 0)
    info = make_info("a.bin", 3)[0]
    ids = state.put_datasets("r", [info])
    state.close()
    with sqlite3.connect(tmp_path / "state.db") as db:  # as version 3 kept it
        db.execute("ALTER TABLE datasets DROP COLUMN etag")
        db.execute("UPDATE datasets SET info = ?", (info.to_bytes().decode(),))
        db.execute("PRAGMA user_version = 3")
    state = State(tmp_path / "state.db")
    [held] = state.datasets()
    assert held == Dataset.of(ids["a.bin"], "r", info)
    state.close()
