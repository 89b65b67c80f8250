"""caterva/sqlite.py: the one way caterva opens SQLite, groups writes, versions schemas and
keeps an identity; the state databases of the subscriber, the publisher and the users use it."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from caterva import sqlite
from caterva.errors import StateError
from caterva.protocol.topics import check_pub_id

SCHEMA = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); CREATE TABLE t (x)"


@pytest.fixture
def db(tmp_path):
    db = sqlite.connect(tmp_path / "x.db")
    sqlite.upgrade(db, what="test", where="x.db", schema=SCHEMA, current=1, migrations={})
    yield db
    db.close()


def rows(db) -> list[int]:
    return [x for (x,) in db.execute("SELECT x FROM t ORDER BY x")]


def test_a_connection_is_wal_autocommit_with_foreign_keys_and_a_busy_timeout(db):
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert db.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert db.execute("PRAGMA busy_timeout").fetchone() == (sqlite.BUSY_TIMEOUT_MS,)
    db.execute("INSERT INTO t VALUES (1)")
    assert not db.in_transaction  # committed by itself
    other = threading.Thread(target=db.execute, args=("INSERT INTO t VALUES (2)",))
    other.start()  # a service's worker threads share its connection
    other.join()
    assert rows(db) == [1, 2]


def test_a_read_only_connection_never_writes(tmp_path, db):
    db.execute("INSERT INTO t VALUES (1)")
    reader = sqlite.connect(tmp_path / "x.db", readonly=True)
    assert rows(reader) == [1]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("INSERT INTO t VALUES (2)")
    with pytest.raises(sqlite3.OperationalError):
        sqlite.connect(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()


def test_a_transaction_commits_or_rolls_back_as_a_whole(db):
    with sqlite.transaction(db):
        db.execute("INSERT INTO t VALUES (1)")
        db.execute("INSERT INTO t VALUES (2)")
    with pytest.raises(ZeroDivisionError), sqlite.transaction(db):
        db.execute("INSERT INTO t VALUES (3)")
        raise ZeroDivisionError
    assert rows(db) == [1, 2] and not db.in_transaction


def test_a_nested_transaction_joins_the_outer_one(db):
    with pytest.raises(ZeroDivisionError), sqlite.transaction(db):
        with sqlite.transaction(db):
            db.execute("INSERT INTO t VALUES (1)")
        assert db.in_transaction  # the inner one did not commit
        raise ZeroDivisionError
    assert rows(db) == []
    with sqlite.transaction(db):
        with pytest.raises(ZeroDivisionError), sqlite.transaction(db):
            db.execute("INSERT INTO t VALUES (2)")
            raise ZeroDivisionError
        db.execute("INSERT INTO t VALUES (3)")  # the outer one decides
    assert rows(db) == [2, 3]


def test_identity_is_made_once_and_kept(tmp_path, db):
    pub_id, fresh = sqlite.identity(db)
    assert fresh and check_pub_id(pub_id) == pub_id
    assert sqlite.identity(db) == (pub_id, False)
    again = sqlite.connect(tmp_path / "x.db")
    assert sqlite.identity(again) == (pub_id, False)
    with sqlite.transaction(db):  # inside a caller's transaction, as part of it
        assert sqlite.identity(db) == (pub_id, False)


def test_a_failed_migration_leaves_the_old_version(tmp_path, db):
    db.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError):
        sqlite.upgrade(
            db,
            what="test",
            where="x.db",
            schema=SCHEMA,
            current=2,
            migrations={1: "INSERT INTO t VALUES (2); INSERT INTO nowhere VALUES (3)"},
        )
    assert sqlite.version(db) == 1 and rows(db) == [1]
    with pytest.raises(StateError, match="newer caterva"):
        sqlite.upgrade(db, what="test", where="x.db", schema=SCHEMA, current=0, migrations={})


def test_the_state_databases_share_one_identity_rule(tmp_path):
    from caterva.publisher.store import Store
    from caterva.subscriber.state import State

    state = State(tmp_path / "state.db")
    assert state.identity() == state.identity()
    assert state.db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    state.close()
    store = Store.open(tmp_path)
    pub_id, fresh = store.identity()
    assert fresh and store.identity() == (pub_id, False)
    store.close()
