"""Login tokens (caterva/tokens.py), the client's token store (caterva/credentials.py), the
client's credentials flow, and MQTT accounts and topic rules (caterva/broker/access.py).
No sockets: the clock is injected, the subscriber is an httpx.MockTransport."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import subprocess

import httpx
import pytest

from caterva import credentials
from caterva.broker import access
from caterva.client import AsyncClient, Client
from caterva.errors import StateError, TokenExpired, Unauthorized
from caterva.tokens import Signer, load_secret

SECRET = b"k" * 32


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_token_carries_user_issued_and_expiry_and_verifies():
    clock = Clock()
    token, claims = Signer(SECRET, clock).issue("ada@lab.org", ttl=3600)
    assert (claims.user, claims.issued, claims.expiry) == ("ada@lab.org", 1e6, 1e6 + 3600)
    body = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert body == {"v": 1, "user": "ada@lab.org", "issued": 1e6, "expiry": 1e6 + 3600}
    assert Signer(SECRET, clock).verify(token) == claims


def test_an_expired_token_says_so():
    clock = Clock()
    signer = Signer(SECRET, clock)
    token, _ = signer.issue("ada@lab.org", ttl=60)
    clock.now += 59.9
    signer.verify(token)
    clock.now += 0.1
    with pytest.raises(TokenExpired, match="expired"):
        signer.verify(token)


@pytest.mark.parametrize("tamper", ["payload", "signature", "secret", "garbage"])
def test_a_forged_or_altered_token_is_refused(tamper):
    clock = Clock()
    token, _ = Signer(SECRET, clock).issue("ada@lab.org", ttl=60)
    body, mac = token.split(".")
    if tamper == "payload":  # claim to be someone else, keep the signature
        forged = json.dumps({"v": 1, "user": "root@lab.org", "issued": 1e6, "expiry": 1e9})
        token = base64.urlsafe_b64encode(forged.encode()).decode().rstrip("=") + "." + mac
    elif tamper == "signature":
        token = body + "." + mac[:-2] + ("AA" if not mac.endswith("AA") else "BB")
    elif tamper == "garbage":
        token = "not-a-token"
    signer = Signer(b"x" * 32 if tamper == "secret" else SECRET, clock)
    with pytest.raises(Unauthorized) as raised:
        signer.verify(token)
    assert not isinstance(raised.value, TokenExpired)


def test_a_token_from_the_future_is_refused():
    token, _ = Signer(SECRET, Clock(2e6)).issue("ada@lab.org", ttl=60)
    with pytest.raises(Unauthorized, match="future"):
        Signer(SECRET, Clock(1e6)).verify(token)


def test_the_secret_is_made_once_private_and_kept(tmp_path):
    path = tmp_path / "state" / "token-secret"
    first = load_secret(path)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(path) == first  # never regenerated: tokens survive restarts
    token, _ = Signer(first).issue("ada@lab.org", 60)
    Signer(load_secret(path)).verify(token)
    assert [p.name for p in path.parent.iterdir()] == ["token-secret"]  # no temp file left


def test_a_configured_secret_may_be_any_text_but_not_short(tmp_path):
    (tmp_path / "s").write_text("a configured secret, long enough\n")
    assert load_secret(tmp_path / "s", create=False) == b"a configured secret, long enough"
    (tmp_path / "short").write_text("tiny")
    with pytest.raises(StateError, match="too short"):
        load_secret(tmp_path / "short", create=False)


# --- the client side ----------------------------------------------------------------------------


@pytest.fixture
def token_file(tmp_path, monkeypatch):
    path = tmp_path / "conf" / "tokens.json"
    monkeypatch.setenv("CATERVA_TOKEN_FILE", str(path))
    monkeypatch.setenv("CATERVA_CONFIG", "/nonexistent")
    return path


def test_the_token_store_is_private_and_keyed_by_url(token_file):
    credentials.store("http://a:1", "tok-a", user="ada@lab.org")
    credentials.store("http://b:2", "tok-b")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert credentials.load("http://a:1") == "tok-a"
    assert credentials.load("http://b:2") == "tok-b"
    assert credentials.load("http://c:3") is None
    assert credentials.drop("http://a:1") is True
    assert credentials.drop("http://a:1") is False
    assert credentials.load("http://a:1") is None and credentials.load("http://b:2") == "tok-b"


def test_a_corrupt_token_store_is_not_silently_overwritten(token_file):
    token_file.parent.mkdir(parents=True)
    token_file.write_text("{not json")
    assert credentials.load("http://a:1") is None
    with pytest.raises(StateError, match="fix or delete it"):
        credentials.store("http://a:1", "tok")


class FakeSubscriber:
    """A subscriber that requires login, as an httpx transport."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.signer = Signer(SECRET, self.clock)
        self.logins = 0
        self.seen: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/login":
            body = json.loads(request.content)
            if body != {"email": "ada@lab.org", "password": "pw"}:
                return httpx.Response(
                    401, json={"error": {"code": "bad_credentials", "message": "wrong"}}
                )
            self.logins += 1
            token, claims = self.signer.issue(body["email"], 60)
            return httpx.Response(
                200,
                json={
                    "token": token,
                    "user": claims.user,
                    "issued": claims.issued,
                    "expiry": claims.expiry,
                },
            )
        header = request.headers.get("authorization")
        self.seen.append(header)
        try:
            self.signer.verify((header or "").removeprefix("Bearer "))
        except Unauthorized as exc:
            return httpx.Response(exc.status, json=exc.to_payload())
        return httpx.Response(200, json={"roots": []})


def test_client_with_email_logs_in_once_and_again_when_the_token_expires(token_file):
    fake = FakeSubscriber()
    with Client(
        "http://sub:1", email="ada@lab.org", password="pw", transport=httpx.MockTransport(fake)
    ) as client:
        assert client.roots() == [] and client.roots() == []
        assert fake.logins == 1
        fake.clock.now += 61  # expired: the client logs in again by itself
        assert client.roots() == []
        assert fake.logins == 2
    assert not token_file.exists()  # the Python API stores nothing by itself


def test_async_client_logs_in_the_same_way(token_file):
    """One login flow for both clients: the async one also logs in once, and again when the
    token expires."""
    fake = FakeSubscriber()

    async def main() -> None:
        async with AsyncClient(
            "http://sub:1", email="ada@lab.org", password="pw", transport=httpx.MockTransport(fake)
        ) as client:
            assert await client.roots() == [] and await client.roots() == []
            assert fake.logins == 1
            fake.clock.now += 61
            assert await client.roots() == []
            assert fake.logins == 2

    asyncio.run(main())


def test_client_uses_the_stored_token_of_its_url(token_file):
    fake = FakeSubscriber()
    token, _ = fake.signer.issue("ada@lab.org", 60)
    credentials.store("http://sub:1", token)
    with Client("http://sub:1/", transport=httpx.MockTransport(fake)) as client:
        client.roots()
    with Client("http://other:1", transport=httpx.MockTransport(fake)) as client:
        with pytest.raises(Unauthorized):
            client.roots()
    assert fake.seen == [f"Bearer {token}", None]


def test_an_expired_stored_token_raises_token_expired(token_file):
    fake = FakeSubscriber()
    token, _ = fake.signer.issue("ada@lab.org", 60)
    fake.clock.now += 120
    with Client("http://sub:1", token=token, transport=httpx.MockTransport(fake)) as client:
        with pytest.raises(TokenExpired, match="expired"):
            client.roots()


def test_login_returns_a_token_the_client_then_uses(token_file):
    fake = FakeSubscriber()
    with Client("http://sub:1", transport=httpx.MockTransport(fake)) as client:
        answer = client.login("ada@lab.org", "pw")
        client.roots()
    assert fake.seen == [f"Bearer {answer['token']}"]


# --- MQTT accounts ------------------------------------------------------------------------------


def test_our_password_hashes_are_mosquittos_and_back(tmp_path):
    hashed = access.hash_password("s3cret pass")
    assert hashed.startswith("$7$")
    assert access.verify_password("s3cret pass", hashed)
    assert not access.verify_password("wrong", hashed)
    # one written by mosquitto_passwd (Mosquitto 2.0, sha512-pbkdf2) verifies too
    mosquitto_made = (
        "$7$101$sWMXoeMtxt3Gz3/R$d6OBB+2AkcsqFaGwu8J+WwD3+X61P4Teej28zjC1zGtOkD2zQjA64BPzXGJbgzt+"
        "ufsf7D4iU9W/NU7VAt9nfQ=="
    )
    assert access.verify_password("s3cret", mosquitto_made)
    assert not access.verify_password("s3cret", "$6$abc$def")


def test_mosquitto_passwd_accepts_what_we_write(tmp_path):
    """Run only where the tool exists: its -U would re-hash, so check with its own verify
    path instead: a file it created and one we created have the same shape."""
    tool = subprocess.run(["which", "mosquitto_passwd"], capture_output=True, text=True)
    if tool.returncode != 0:
        pytest.skip("mosquitto_passwd not installed")
    path = tmp_path / "pw"
    subprocess.run([tool.stdout.strip(), "-c", "-b", str(path), "alice", "pw"], check=True)
    ours = access.hash_password("pw")
    theirs = path.read_text().strip().split(":", 1)[1]
    assert [len(p) for p in ours.split("$")[3:]] == [len(p) for p in theirs.split("$")[3:]]
    assert access.verify_password("pw", theirs)


def test_password_files_with_plain_and_hashed_entries(tmp_path):
    path = tmp_path / "passwords"
    hashed = access.hash_password("bob-pass")
    path.write_text(f"# accounts\n\nalice:alice pass\nbob:{hashed}\n")
    accounts = access.read_accounts(path)
    assert accounts["bob"] == hashed
    assert access.verify_password("alice pass", accounts["alice"])
    assert "alice pass" not in access.password_file_text(accounts)


@pytest.mark.parametrize(
    "line, message",
    [
        ("no-separator", "USERNAME:PASSWORD"),
        ("pub/x:pw", "invalid username"),
        ("a+b:pw", "invalid username"),
        ("bob:$argon2id$v=19$m=1$abc", "unsupported password hash"),
    ],
)
def test_bad_password_files_are_refused_clearly(tmp_path, line, message):
    (tmp_path / "p").write_text(line + "\n")
    with pytest.raises(Exception, match=message):
        access.read_accounts(tmp_path / "p")


@pytest.mark.parametrize(
    "user, topic, allowed",
    [
        ("pubA", "caterva/v1/pub/pubA/status", True),
        ("pubA", "caterva/v1/pub/pubA/roots/climate", True),
        ("pubA", "caterva/v1/pub/pubA/changes/climate", True),
        ("pubA", "caterva/v1/discover", True),
        ("pubA", "caterva/v1/pub/pubB/roots/climate", False),
        ("pubA", "caterva/v1/pub/pubAx/roots/climate", False),  # a prefix of a name is not it
        ("pubA", "caterva/v1/pub/pubA", True),
        ("pubA", "caterva/v1/roots/climate/changes", False),
        ("pubA", "other/topic", False),
        (None, "caterva/v1/discover", False),
    ],
)
def test_publish_rule(user, topic, allowed):
    assert access.may_publish(user, topic) is allowed


@pytest.mark.parametrize(
    "topic, allowed",
    [
        ("caterva/v1/#", True),
        ("caterva/v1/pub/+/status", True),
        ("caterva/v1", False),
        ("caterva/#", False),
        ("#", False),
        ("$SYS/#", False),
    ],
)
def test_read_rule(topic, allowed):
    assert access.may_read(topic) is allowed


def test_mosquitto_acl_confines_writes_to_the_username():
    lines = [line for line in access.MOSQUITTO_ACL.splitlines() if not line.startswith("#")]
    assert lines == [
        "pattern read caterva/v1/#",
        "pattern write caterva/v1/discover",
        "pattern write caterva/v1/pub/%u/#",
    ]


# --- service tokens and security settings -------------------------------------------------------


def test_require_token_denies_by_default_and_leaves_health_open(tmp_path):
    import asyncio

    from fastapi import FastAPI

    from caterva.service.auth import require_tokens

    app = FastAPI()
    app.get("/v1/health")(lambda: {"status": "ok"})
    app.get("/v1/roots/{root}/manifest")(lambda root: {"root": root})
    app.get("/v1/added/later")(lambda: {"ok": True})
    require_tokens(app, ("tok-1", "tok-2"))

    async def check() -> None:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://pub"
        ) as http:
            assert (await http.get("/v1/health")).status_code == 200
            for path in ("/v1/roots/demo/manifest", "/v1/added/later", "/v1/nope"):
                for auth in ({}, {"Authorization": "Bearer tok-3"}, {"Authorization": "tok-1"}):
                    r = await http.get(path, headers=auth)
                    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
            for token in ("tok-1", "tok-2"):
                r = await http.get("/v1/added/later", headers={"Authorization": f"bearer {token}"})
                assert r.status_code == 200

    asyncio.run(check())


def test_security_settings(tmp_path, monkeypatch):
    from caterva.errors import BadRequest
    from caterva.service.security import Security

    monkeypatch.setenv("CATERVA_CONFIG", "/nonexistent")
    (tmp_path / "tokens").write_text("# comment\n\nt1\n t2 \n")
    built = Security.build(require_token="t0", require_token_file=tmp_path / "tokens")
    assert built.require_tokens == ("t0", "t1", "t2")
    assert not built.auth and built.token_ttl == 12 * 3600
    assert Security.build(users=tmp_path / "u.db", token_ttl="15m").auth  # --users implies it
    assert Security.build(users=tmp_path / "u.db").accounts(tmp_path / "state") == (
        tmp_path / "u.db",
        tmp_path / "state" / "token-secret",
    )
    monkeypatch.setenv("CATERVA_SOURCE_TOKEN", "http://a:1=from-env,https://b/x=two")
    options = Security.build(max_body="1MiB").source_client_options()
    assert options["auth"].token_for("http://a:1/v1/x") == "from-env"
    assert options["auth"].token_for("https://b:443/x/v1") == "two"
    assert {k: options[k] for k in ("max_json", "read_timeout")} == {
        "max_json": 64 * 2**20,
        "read_timeout": 10.0,
    }
    assert Security.build(max_body="1MiB").max_body == 2**20
    with pytest.raises(BadRequest, match="both --tls-cert and --tls-key"):
        Security.build(tls_cert=tmp_path / "tokens")
    with pytest.raises(BadRequest, match="does not exist"):
        Security.build(ca_file=tmp_path / "missing.pem")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(BadRequest, match="holds no token"):
        Security.build(require_token_file=tmp_path / "empty")


def test_a_mirror_that_authenticates_upstream_must_authenticate_downstream(monkeypatch):
    from caterva.errors import BadRequest
    from caterva.service.security import Security

    monkeypatch.setenv("CATERVA_CONFIG", "/nonexistent")
    token = ["http://up:8470=t"]
    with pytest.raises(BadRequest, match="add --auth"):
        Security.build(source_token=token).check_republishing(True)
    Security.build(source_token=token).check_republishing(False)
    Security.build(source_token=token, auth=True).check_republishing(True)
    Security.build(source_token=token, require_token="u").check_republishing(True)
    Security.build().check_republishing(True)  # nothing upstream needs a credential


def test_a_source_token_goes_only_to_the_sources_it_was_given_for(tmp_path, monkeypatch):
    from caterva.errors import BadRequest
    from caterva.service.security import Security

    monkeypatch.setenv("CATERVA_CONFIG", "/nonexistent")
    tokens = Security.build(
        source_token=["http://h:8470=T", "http://h:8470/deep/=D", "https://s.lab=S=="]
    ).source_client_options()["auth"]
    for url, token in [
        ("http://h:8470/v1/roots/r/manifest", "T"),
        ("http://H:8470", "T"),
        ("http://h:8470/deep", "D"),  # the longest prefix wins
        ("http://h:8470/deep/v1/x", "D"),
        ("http://h:8470/deeper/v1/x", "T"),  # a path prefix ends on a segment
        ("https://s.lab:443/v1", "S=="),  # default port; '=' in a token is kept
        ("http://h:84701/v1", None),  # another port
        ("http://h:8470@evil/v1", None),  # another host (h:8470 is a user and password)
        ("http://h.8470/v1", None),
        ("https://h:8470/v1", None),  # another scheme
        ("http://s.lab/v1", None),
        ("http://evil/?u=http://h:8470", None),
    ]:
        assert tokens.token_for(url) == token, url

    requests = []

    def seen(request: httpx.Request) -> httpx.Response:
        requests.append(request.headers.get("authorization"))
        return httpx.Response(200)

    with httpx.Client(auth=tokens, transport=httpx.MockTransport(seen)) as client:
        client.get("http://h:8470/v1/health")
        client.get("http://mirror:8471/v1/health")
    assert requests == ["Bearer T", None]

    with pytest.raises(BadRequest, match="now given with the sources it is for: URL=TOKEN"):
        Security.build(source_token=["bare-token"])
    for url in ("ftp://h", "http://h:8470.evil", "http://u:p@h", "http://h/?q"):
        with pytest.raises(BadRequest, match="invalid source URL"):
            Security.build(source_token=[f"{url}=T"])
    (tmp_path / "tokens").write_text("# sources\nhttp://a:1 A\n\nhttps://b/x  B\n")
    tokens = Security.build(source_token_file=tmp_path / "tokens").source_client_options()["auth"]
    assert (tokens.token_for("http://a:1/v1"), tokens.token_for("https://b/x/y")) == ("A", "B")
    (tmp_path / "bare").write_text("just-a-token\n")
    with pytest.raises(BadRequest, match="`URL TOKEN` lines"):
        Security.build(source_token_file=tmp_path / "bare")


def test_broker_urls_carry_credentials_and_ca_but_never_print_them():
    from caterva.mqtt import BrokerURL, with_credentials

    url = with_credentials("mqtt://127.0.0.1:1883", "alice", "p@ss:w/rd", "/etc/ca file.pem")
    parsed = BrokerURL.parse(url)
    assert (parsed.username, parsed.password, parsed.cafile) == (
        "alice",
        "p@ss:w/rd",
        "/etc/ca file.pem",
    )
    assert str(parsed) == "mqtt://127.0.0.1:1883"
    # what the URL says wins over flags and env
    assert BrokerURL.parse(with_credentials("mqtt://bob:x@h", "alice", "y")).username == "bob"
