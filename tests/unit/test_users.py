"""The users database (caterva/users.py) and the admin CLI over it (caterva user ...)."""

from __future__ import annotations

import json
import sqlite3
import stat

import pytest
from typer.testing import CliRunner

from caterva import users as users_module
from caterva.cli.app import app
from caterva.errors import BadRequest, InvalidName, NotFound, StateError
from caterva.users import Users, check_email

PASSWORD = "correct horse"


@pytest.fixture
def db(tmp_path):
    with Users.open(tmp_path / "users.db", clock=lambda: 1000.0) as users:
        yield users


def test_a_new_user_has_no_grants_and_a_hashed_password(db):
    user = db.add("Ada@Lab.org ", PASSWORD)
    assert user.email == "ada@lab.org"  # canonical: trimmed, lowercase
    assert db.roots_of("ada@lab.org") == frozenset()
    (stored,) = db.db.execute("SELECT password FROM users").fetchone()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_the_database_is_private(db):
    assert stat.S_IMODE(db.path.stat().st_mode) == 0o600


def test_verify_takes_the_right_password_only(db):
    db.add("ada@lab.org", PASSWORD)
    assert db.verify("ADA@lab.org", PASSWORD) == "ada@lab.org"
    assert db.verify("ada@lab.org", "wrong password") is None
    assert db.verify("nobody@lab.org", PASSWORD) is None
    assert db.verify("not an email", PASSWORD) is None


def test_grant_and_revoke(db):
    db.add("ada@lab.org", PASSWORD)
    assert db.grant("ada@lab.org", "climate") is True
    assert db.grant("ada@lab.org", "climate") is False  # already had it
    db.grant("ada@lab.org", "ocean")
    assert db.roots_of("ada@lab.org") == {"climate", "ocean"}
    assert db.revoke("ada@lab.org", "climate") is True
    assert db.revoke("ada@lab.org", "climate") is False
    assert db.roots_of("ada@lab.org") == {"ocean"}


def test_grants_need_a_user_and_a_valid_root(db):
    with pytest.raises(NotFound, match="no user bob@lab.org"):
        db.grant("bob@lab.org", "climate")
    db.add("bob@lab.org", PASSWORD)
    with pytest.raises(InvalidName):
        db.grant("bob@lab.org", "../etc")


def test_removing_a_user_drops_its_grants(db):
    db.add("ada@lab.org", PASSWORD)
    db.grant("ada@lab.org", "climate")
    db.remove("ada@lab.org")
    assert db.roots_of("ada@lab.org") is None  # no such user: its tokens stop working
    assert db.db.execute("SELECT COUNT(*) FROM grants").fetchone() == (0,)
    with pytest.raises(NotFound):
        db.remove("ada@lab.org")


def test_duplicates_short_passwords_and_bad_emails_are_refused(db):
    db.add("ada@lab.org", PASSWORD)
    with pytest.raises(BadRequest, match="exists"):
        db.add("ADA@lab.org", PASSWORD)
    with pytest.raises(BadRequest, match="8 characters"):
        db.add("bob@lab.org", "short")
    for bad in ("ada", "a@b@c", "a b@c", "a:b@c", ""):
        with pytest.raises(BadRequest):
            check_email(bad)


def test_list_shows_users_with_their_roots(db):
    db.add("bob@lab.org", PASSWORD)
    db.add("ada@lab.org", PASSWORD)
    db.grant("ada@lab.org", "ocean")
    db.grant("ada@lab.org", "climate")
    assert [u.to_dict() for u in db.list()] == [
        {"email": "ada@lab.org", "created": 1000.0, "roots": ["climate", "ocean"]},
        {"email": "bob@lab.org", "created": 1000.0, "roots": []},
    ]


def test_a_reader_sees_changes_the_admin_commits(tmp_path):
    """What makes a grant take effect on the next request: services keep a read-only
    connection, and every query sees the latest commit."""
    with Users.open(tmp_path / "u.db") as admin:
        admin.add("ada@lab.org", PASSWORD)
        reader = Users.open(tmp_path / "u.db", readonly=True)
        assert reader.roots_of("ada@lab.org") == frozenset()
        admin.grant("ada@lab.org", "climate")
        assert reader.roots_of("ada@lab.org") == {"climate"}
        admin.revoke("ada@lab.org", "climate")
        assert reader.roots_of("ada@lab.org") == frozenset()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.db.execute("DELETE FROM grants")
        reader.close()


def test_a_service_never_creates_a_missing_database(tmp_path):
    with pytest.raises(StateError, match="caterva user add"):
        Users.open(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path):
    Users.open(tmp_path / "u.db").close()
    with sqlite3.connect(tmp_path / "u.db") as raw:
        raw.execute("PRAGMA user_version = 99")
    for readonly in (False, True):
        with pytest.raises(StateError, match="newer caterva.*schema 99"):
            Users.open(tmp_path / "u.db", readonly=readonly)


def test_an_older_schema_is_migrated_in_place_keeping_users(tmp_path, monkeypatch):
    with Users.open(tmp_path / "u.db") as db:
        db.add("ada@lab.org", PASSWORD)
        db.grant("ada@lab.org", "climate")
    # pretend this caterva knows schema 2, which adds a column
    monkeypatch.setattr(users_module, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(users_module, "MIGRATIONS", {1: "ALTER TABLE users ADD COLUMN note TEXT"})
    with pytest.raises(StateError, match="older users schema"):
        Users.open(tmp_path / "u.db", readonly=True)  # a service does not migrate
    with Users.open(tmp_path / "u.db") as db:
        assert db.version() == 2
        assert db.roots_of("ada@lab.org") == {"climate"}
        assert db.verify("ada@lab.org", PASSWORD) == "ada@lab.org"
        db.db.execute("SELECT note FROM users").fetchall()


def test_a_file_that_is_not_a_users_database_is_refused(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StateError, match="cannot open the users database"):
        Users.open(tmp_path / "junk.db")


# --- the admin CLI ------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("CATERVA_CONFIG", "/nonexistent")
    monkeypatch.setenv("CATERVA_USERS", str(tmp_path / "cli-users.db"))
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input)

    return run


def test_cli_add_grant_list_revoke_remove(cli):
    added = cli("user", "add", "ada@lab.org", "--password-stdin", input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert cli("user", "grant", "ada@lab.org", "climate").exit_code == 0
    listed = cli("user", "list", "--json")
    assert json.loads(listed.stdout)["users"][0]["roots"] == ["climate"]
    assert "climate" in cli("user", "list").stdout
    assert cli("user", "revoke", "ada@lab.org", "climate").exit_code == 0
    assert json.loads(cli("user", "list", "--json").stdout)["users"][0]["roots"] == []
    assert cli("user", "remove", "ada@lab.org").exit_code == 0
    assert json.loads(cli("user", "list", "--json").stdout) == {"users": []}


def test_cli_asks_for_the_password_twice(cli, tmp_path):
    mismatch = cli("user", "add", "ada@lab.org", input=f"{PASSWORD}\nsomething else\n")
    assert mismatch.exit_code != 0
    ok = cli("user", "add", "ada@lab.org", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert ok.exit_code == 0, ok.output
    with Users.open(tmp_path / "cli-users.db", readonly=True) as db:
        assert db.verify("ada@lab.org", PASSWORD)


def test_cli_passwd_changes_the_password(cli, tmp_path):
    cli("user", "add", "ada@lab.org", "--password-stdin", input=PASSWORD + "\n")
    changed = cli("user", "passwd", "ada@lab.org", "--password-stdin", input="new password\n")
    assert changed.exit_code == 0, changed.output
    with Users.open(tmp_path / "cli-users.db", readonly=True) as db:
        assert db.verify("ada@lab.org", "new password")
        assert not db.verify("ada@lab.org", PASSWORD)


def test_cli_users_flag_beats_the_environment(cli, tmp_path):
    other = tmp_path / "other.db"
    cli(
        "user",
        "add",
        "ada@lab.org",
        "--password-stdin",
        "--users",
        str(other),
        input=PASSWORD + "\n",
    )
    assert other.exists() and not (tmp_path / "cli-users.db").exists()


def test_cli_token_mints_a_token_for_an_existing_user(cli, tmp_path):
    from caterva.tokens import Signer, load_secret

    secret = tmp_path / "token-secret"
    load_secret(secret)  # as a subscriber with --auth makes it
    missing = cli("user", "token", "ada@lab.org", "--secret", str(secret))
    assert missing.exit_code != 0
    cli("user", "add", "ada@lab.org", "--password-stdin", input=PASSWORD + "\n")
    minted = cli("user", "token", "ADA@lab.org", "--ttl", "90d", "--secret", str(secret), "--json")
    assert minted.exit_code == 0, minted.output
    body = json.loads(minted.stdout)
    claims = Signer(load_secret(secret)).verify(body["token"])
    assert claims.user == "ada@lab.org" and claims.expiry - claims.issued == 90 * 86400
    nosecret = cli("user", "token", "ada@lab.org", "--secret", str(tmp_path / "none"))
    assert nosecret.exit_code != 0
