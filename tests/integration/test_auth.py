"""Accounts on a real subscriber (``caterva sub --users DB``): deny by default over every route
of its OpenAPI document, per-root grants that take effect on the next request, tokens that
survive a restart and expire with a clear message, and no way to change grants over HTTP.

    broker (amqtt) <- publisher of root "demo" (and "other")   subscriber --users users.db
    ada: no grants at first      bob: "other" only
"""

from __future__ import annotations

import io
import json
import time

import httpx
import numpy as np
import pytest

from caterva.client import Client
from caterva.errors import Forbidden, TokenExpired
from caterva.tokens import Signer, load_secret
from tests.conftest import Services, free_port
from tests.integration.authkit import (
    GRID,
    MUTATING,
    PASSWORD,
    bearer,
    cli,
    is_json_error,
    login,
    make_users,
    request_for,
    routes,
    tiny_root,
    wait_root,
)
from tests.integration.fakes import BIG, connect, post_head, read_answer

ADA, BOB = "ada@lab.org", "bob@lab.org"
PUBLIC = {"/v1/health", "/v1/login"}


class Stack(Services):
    def __init__(self, tmp) -> None:
        super().__init__(tmp)
        self.tmp = tmp
        self.users = make_users(tmp / "users.db", {ADA: [], BOB: ["other"]})
        broker = self.start("bro", "--port", "0", "--statedir", str(tmp / "bro")).url
        for name in ("demo", "other"):
            self.start(
                "pub",
                name,
                str(tiny_root(tmp / name)),
                "--broker",
                broker,
                "--http",
                "127.0.0.1:0",
                "--statedir",
                str(tmp / "pub"),
                wait=False,
            )
        self.sub_args = [
            "sub",
            "--broker",
            broker,
            "--http",
            f"127.0.0.1:{free_port()}",
            "--statedir",
            str(tmp / "sub"),
            "--users",
            str(self.users),
        ]
        self.sub = self.start(*self.sub_args)
        self.url = self.sub.url
        for service in self.started:
            service.wait_ready()

    def restart_subscriber(self) -> None:
        assert self.sub.stop() == 0
        self.sub = self.start(*self.sub_args)
        assert self.sub.url == self.url

    def user(self, command: str, *args: str):
        done = cli("user", command, *args, "--users", str(self.users))
        assert done.returncode == 0, done.stderr
        return done


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("auth"))
    try:
        # wait as bob for "other", as an admin would see them: both announced
        wait_root(stack.url, "other", headers=bearer(login(stack.url, BOB)))
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def openapi(stack):
    r = httpx.get(f"{stack.url}/openapi.json")  # public: the API describes itself
    assert r.status_code == 200
    return r.json()


def names(url: str, token: str) -> list[str]:
    r = httpx.get(f"{url}/v1/roots", headers=bearer(token))
    assert r.status_code == 200, r.text
    return [entry["root"] for entry in r.json()["roots"]]


def test_anonymous_gets_401_json_on_every_route_but_health_and_login(stack, openapi):
    checked = 0
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        for method, template, path in routes(openapi, root="demo"):
            if template in PUBLIC:
                continue
            for headers in ({}, bearer("forged.token"), {"Authorization": "Basic YTpi"}):
                r = http.request(method, path, **request_for(method, template), headers=headers)
                assert is_json_error(r, 401, "unauthorized"), (method, path, headers, r.text)
                checked += 1
            assert "401" in openapi["paths"][template][method.lower()]["responses"], template
        assert http.get("/v1/health").status_code == 200
    assert checked >= 3 * 10  # roots, follow x2, manifest, info, data, chunk, chunks, file, ...


def test_a_user_without_a_grant_gets_403_on_every_route_of_the_root(stack, openapi):
    token = login(stack.url, ADA)
    with httpx.Client(base_url=stack.url, headers=bearer(token), timeout=10) as http:
        root_routes = [(m, t, p) for m, t, p in routes(openapi, root="demo") if "{root}" in t]
        assert len(root_routes) >= 7
        for method, template, path in root_routes:
            r = http.request(method, path, **request_for(method, template))
            assert is_json_error(r, 403, "forbidden"), (method, path, r.text)
            assert "403" in openapi["paths"][template][method.lower()]["responses"], template
        # a root named in a query parameter is checked too
        assert is_json_error(http.get("/v1/events", params={"root": "demo"}), 403, "forbidden")
        # and one that does not exist answers the same: nothing leaks about others' roots
        assert is_json_error(http.get("/v1/roots/no-such-root/manifest"), 403, "forbidden")


def test_grant_and_revoke_take_effect_on_the_next_request(stack):
    token = login(stack.url, ADA)
    headers = bearer(token)
    manifest = f"{stack.url}/v1/roots/demo/manifest"
    assert "demo" not in names(stack.url, token)
    assert httpx.put(f"{stack.url}/v1/roots/demo/follow", headers=headers).status_code == 403

    stack.user("grant", ADA, "demo")  # the admin CLI, while everything runs
    assert "demo" in names(stack.url, token)
    assert httpx.put(f"{stack.url}/v1/roots/demo/follow", headers=headers).status_code == 200
    assert httpx.get(manifest, headers=headers).status_code == 200
    r = httpx.get(
        f"{stack.url}/v1/roots/demo/data/grid.b2nd", params={"sel": "2:5, ::7"}, headers=headers
    )
    assert r.status_code == 200
    np.testing.assert_array_equal(np.load(io.BytesIO(r.content)), GRID[2:5, ::7])

    stack.user("revoke", ADA, "demo")
    assert is_json_error(httpx.get(manifest, headers=headers), 403, "forbidden")
    assert "demo" not in names(stack.url, token)
    assert names(stack.url, login(stack.url, BOB)) == ["other"]


def test_the_python_client_logs_in_and_sees_only_granted_roots(stack):
    with Client(stack.url, email=BOB, password=PASSWORD) as client:
        assert [r.name for r in client.roots()] == ["other"]


def test_a_selection_logs_in_by_itself_and_reads_only_granted_roots(stack):
    """A selection's chunk batches go through their own transport (client/lean.py), with the
    client's credentials: a login made by the batch request itself included."""
    from caterva.client.dataset import Dataset

    with Client(stack.url, email=BOB, password=PASSWORD) as client:
        client.follow("other")
        ds = client.dataset("other/grid.b2nd")
    with Client(stack.url, email=BOB, password=PASSWORD) as fresh:  # its first request: chunks
        got = Dataset(fresh, "other", ds.info, ds.cached)[3:17, ::-3]
        np.testing.assert_array_equal(got, GRID[3:17, ::-3])
        fresh._auth.token = stale = expired_token(stack)  # renewed at the next batch
        np.testing.assert_array_equal(Dataset(fresh, "other", ds.info, ds.cached)[:, 5], GRID[:, 5])
        assert fresh._auth.token not in (None, stale)
    with Client(stack.url, token=expired_token(stack)) as stale, pytest.raises(TokenExpired):
        Dataset(stale, "other", ds.info, ds.cached)[0:2]
    with Client(stack.url, email=ADA, password=PASSWORD) as ada, pytest.raises(Forbidden):
        Dataset(ada, "other", ds.info, ds.cached)[0:2]


def expired_token(stack) -> str:
    secret = load_secret(stack.tmp / "sub" / "token-secret", create=False)
    past = time.time() - 13 * 3600  # issued 13 hours ago, valid for 12: expired an hour ago
    return Signer(secret, clock=lambda: past).issue(BOB, ttl=12 * 3600)[0]


def test_wrong_passwords_and_unknown_users_get_the_same_answer(stack):
    for email, password in ((ADA, "wrong password"), ("nobody@lab.org", PASSWORD)):
        r = httpx.post(f"{stack.url}/v1/login", json={"email": email, "password": password})
        assert is_json_error(r, 401, "bad_credentials")
        assert r.json()["error"]["message"] == "wrong email or password"


def test_no_endpoint_changes_users_or_grants(stack, openapi):
    grant_like = ("user", "grant", "revoke", "account", "admin", "permission", "acl", "role")
    for method, template, _ in routes(openapi, root="demo"):
        assert not any(word in template.lower() for word in grant_like), template
        if method in MUTATING:  # the only writes: logging in, and following (needs a grant)
            assert (method, template) in {
                ("post", "/v1/login"),
                ("post", "/v1/roots/{root}/chunks"),  # a read whose list is the body
                ("post", "/api/fetch/{root}/{path}"),  # a read whose key is the body (Caterva2)
                ("post", "/v1/roots/{root}/handoff/{path}"),  # a read: a ticket for one file
                ("put", "/v1/roots/{root}/follow"),
                ("delete", "/v1/roots/{root}/follow"),
            }, (method, template)
    token = login(stack.url, ADA)
    attempts = [
        "/v1/users",
        f"/v1/users/{ADA}",
        f"/v1/users/{ADA}/grants",
        "/v1/grants",
        "/v1/grants/demo",
        "/v1/roots/demo/grants",
        "/v1/roots/demo/grant",
        "/v1/admin/grant",
        "/v1/me",
        "/v1/me/grants",
        "/v1/roots/demo",
        "/v1/roots",
    ]
    with httpx.Client(base_url=stack.url, headers=bearer(token), timeout=10) as http:
        for path in attempts:
            for method in MUTATING:
                r = http.request(method, path, json={"email": ADA, "root": "demo"})
                assert r.status_code in (404, 405) and "error" in r.json(), (method, path, r.text)
    assert "demo" not in names(stack.url, token)


def test_a_removed_user_is_logged_out_at_once(stack):
    done = cli(
        "user",
        "add",
        "eve@lab.org",
        "--password-stdin",
        "--users",
        str(stack.users),
        input=PASSWORD + "\n",
    )
    assert done.returncode == 0, done.stderr
    token = login(stack.url, "eve@lab.org")
    assert httpx.get(f"{stack.url}/v1/roots", headers=bearer(token)).status_code == 200
    stack.user("remove", "eve@lab.org")
    r = httpx.get(f"{stack.url}/v1/roots", headers=bearer(token))
    assert is_json_error(r, 401, "unauthorized") and "no longer exists" in r.text


def test_an_expired_token_gets_401_saying_so_and_the_cli_asks_to_log_in(stack, tmp_path):
    secret = load_secret(stack.tmp / "sub" / "token-secret", create=False)
    past = time.time() - 13 * 3600  # issued 13 hours ago, valid for 12: expired an hour ago
    token, _ = Signer(secret, clock=lambda: past).issue(BOB, ttl=12 * 3600)
    r = httpx.get(f"{stack.url}/v1/roots", headers=bearer(token))
    assert is_json_error(r, 401, "token_expired") and "expired" in r.json()["error"]["message"]
    with Client(stack.url, token=token) as client, pytest.raises(TokenExpired):
        client.roots()

    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps({"version": 1, "tokens": {stack.url: {"token": token}}}))
    done = cli("roots", "--sub", stack.url, env={"CATERVA_TOKEN_FILE": str(token_file)})
    assert done.returncode == 5
    assert "expired" in done.stderr and "caterva login" in done.stderr


def test_cli_login_stores_a_private_token_that_later_commands_use(stack, tmp_path):
    env = {"CATERVA_TOKEN_FILE": str(tmp_path / "conf" / "tokens.json")}
    anonymous = cli("roots", "--sub", stack.url, env=env)
    assert anonymous.returncode == 5 and anonymous.stderr.count("\n") == 1  # one line
    assert anonymous.stderr.endswith(f": run `caterva login --sub {stack.url}` and try again\n")
    wrong = cli(
        "login",
        "--sub",
        stack.url,
        "--email",
        BOB,
        "--password-stdin",
        input="not the password\n",
        env=env,
    )
    assert wrong.returncode == 5 and "wrong email or password" in wrong.stderr
    assert "caterva login" not in wrong.stderr  # logging in again the same way will not help
    done = cli(
        "login",
        "--sub",
        stack.url,
        "--email",
        BOB,
        "--password-stdin",
        input=PASSWORD + "\n",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "conf" / "tokens.json").stat().st_mode & 0o777 == 0o600
    listed = cli("roots", "--json", "--sub", stack.url, env=env)
    assert listed.returncode == 0, listed.stderr
    assert [r["root"] for r in json.loads(listed.stdout)["roots"]] == ["other"]
    assert cli("logout", "--sub", stack.url, env=env).returncode == 0
    assert cli("roots", "--sub", stack.url, env=env).returncode == 5


def test_tokens_survive_a_subscriber_restart(stack):
    # last in this module: it restarts the shared subscriber
    token = login(stack.url, BOB)
    secret_before = (stack.tmp / "sub" / "token-secret").read_bytes()
    stack.restart_subscriber()
    assert (stack.tmp / "sub" / "token-secret").read_bytes() == secret_before
    assert httpx.get(f"{stack.url}/v1/roots", headers=bearer(token)).status_code == 200


def test_stats_need_a_grant_on_every_followed_root(stack):
    # what /v1/stats counts (the cache) sums every followed root: only a user who may read
    # each of them may read it; a user with no grants, or some, gets 403 (without names)
    for email, roots in (("cy@lab.org", ["demo", "other"]), ("dee@lab.org", [])):
        done = cli(
            "user",
            "add",
            email,
            "--password-stdin",
            "--users",
            str(stack.users),
            input=PASSWORD + "\n",
        )
        assert done.returncode == 0, done.stderr
        for root in roots:
            stack.user("grant", email, root)
    cy = bearer(login(stack.url, "cy@lab.org"))
    for root in ("demo", "other"):
        assert httpx.put(f"{stack.url}/v1/roots/{root}/follow", headers=cy).status_code == 200
    stats = f"{stack.url}/v1/stats"
    r = httpx.get(stats, headers=cy)
    assert r.status_code == 200 and "budget" in r.json(), r.text
    for user in ("dee@lab.org", BOB):  # no grants; "other" only
        r = httpx.get(stats, headers=bearer(login(stack.url, user)))
        assert is_json_error(r, 403, "forbidden") and "demo" not in r.text, r.text
    assert is_json_error(httpx.get(stats), 401, "unauthorized")


def test_an_anonymous_body_is_refused_before_it_is_read(stack):
    # 43 MB announced and none sent: the login check answers first, without waiting for it
    for path in ("/v1/roots/demo/chunks", "/v1/login"):
        with connect(stack.url) as sock:
            sock.sendall(post_head(stack.url, path, **{"Content-Length": str(BIG)}))
            status, body = read_answer(sock)
        expected = (413, "body_too_large") if path == "/v1/login" else (401, "unauthorized")
        assert (status, body["error"]["code"]) == expected, (path, body)
