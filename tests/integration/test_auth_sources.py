"""Services authenticating to each other, and republishing that never widens access.

    broker <- origin publisher of "demo" (--require-token-file: T1, T2)
           <- mirror M: subscriber --republish --users (its own accounts) --source-token T1
           <- downstream D: subscriber --prefer M --source-token <ada's login at M>

carl may read demo at M; ada may not, until the admin grants it. Through M, ada reads nothing
(every route of demo is 403, demo is absent from her listing) and neither does D reading with
her credentials (a token M's admin made with `caterva user token`); after the grant both work.
"""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import numpy as np
import pytest

from caterva.errors import SourceRefused
from caterva.subscriber import upstream
from tests.conftest import Services
from tests.integration.authkit import (
    GRID,
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
from tests.integration.fakes import FakeSource, announce, send_json

T1, T2 = "service-token-one-0123456789", "service-token-two-9876543210"
ADA, CARL = "ada@lab.org", "carl@lab.org"


class Stack(Services):
    def __init__(self, tmp) -> None:
        super().__init__(tmp)
        self.tmp = tmp
        (tmp / "tokens").write_text(f"# subscribers allowed to read demo\n{T1}\n{T2}\n")
        self.users = make_users(tmp / "users.db", {ADA: [], CARL: ["demo"]})
        self.broker = self.start("bro", "--port", "0", "--statedir", str(tmp / "bro")).url
        self.origin = self.start(
            "pub",
            "demo",
            str(tiny_root(tmp / "demo")),
            "--broker",
            self.broker,
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(tmp / "pub"),
            "--require-token-file",
            str(tmp / "tokens"),
        ).url
        # the token for the origin only: `URL TOKEN` lines
        (tmp / "source-token").write_text(f"# our sources\n{self.origin} {T1}\n")
        self.mirror = self.start(
            "sub",
            "--broker",
            self.broker,
            "--republish",
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(tmp / "m"),
            "--users",
            str(self.users),
            "--source-token-file",
            str(tmp / "source-token"),
        ).url


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("sources"))
    try:
        yield stack
    finally:
        stack.close()


def test_the_publisher_answers_only_requests_with_a_service_token(stack):
    openapi = httpx.get(f"{stack.origin}/openapi.json").json()
    with httpx.Client(base_url=stack.origin, timeout=10) as http:
        checked = 0
        for method, template, path in routes(openapi, root="demo"):
            args = request_for(method, template)
            if template == "/v1/health":
                assert http.request(method, path).status_code == 200
                continue
            for headers in ({}, bearer("not-the-token"), bearer(T1 + "x")):
                r = http.request(method, path, **args, headers=headers)
                assert is_json_error(r, 401, "unauthorized"), (method, path, r.text)
                checked += 1
            for token in (T1, T2):  # any token of the file
                r = http.request(method, path, **args, headers=bearer(token))
                assert r.status_code in (200, 206), (method, path, r.text)
        assert checked >= 3 * 5  # manifest, info, chunk, chunks, file, stats


def test_a_subscriber_without_the_token_is_refused_clearly(stack):
    async def read_manifest():
        async with upstream.new_client() as client:
            return await upstream.Source(client, stack.origin).manifest("demo")

    with pytest.raises(SourceRefused, match="refused this subscriber.*--source-token"):
        asyncio.run(read_manifest())


def test_through_a_mirror_a_user_without_a_grant_reads_nothing(stack):
    carl = bearer(login(stack.mirror, CARL))
    # ada's credential for a service of hers: a token M's admin makes (no password involved)
    minted = cli(
        "user",
        "token",
        ADA,
        "--ttl",
        "1d",
        "--users",
        str(stack.users),
        "--secret",
        str(stack.tmp / "m" / "token-secret"),
    )
    assert minted.returncode == 0, minted.stderr
    ada = minted.stdout.strip()
    # carl (granted) makes M follow demo from the origin, with M's own service token
    wait_root(stack.mirror, "demo", headers=carl)
    assert httpx.put(f"{stack.mirror}/v1/roots/demo/follow", headers=carl).status_code == 200
    r = httpx.get(f"{stack.mirror}/v1/roots/demo/data/grid.b2nd", headers=carl)
    assert r.status_code == 200
    np.testing.assert_array_equal(np.load(io.BytesIO(r.content)), GRID)  # now cached at M

    # ada, at M: demo is absent, and every route of it (the client API and the source API
    # that M serves to downstream subscribers) is 403, cached or not
    listing = httpx.get(f"{stack.mirror}/v1/roots", headers=bearer(ada)).json()["roots"]
    assert listing == []
    openapi = httpx.get(f"{stack.mirror}/openapi.json").json()
    with httpx.Client(base_url=stack.mirror, headers=bearer(ada), timeout=10) as http:
        for method, template, path in routes(openapi, root="demo"):
            if "{root}" in template:
                r = http.request(method, path, **request_for(method, template))
                assert is_json_error(r, 403, "forbidden"), (method, path, r.text)

    # D, a subscriber reading from M with ada's credentials, gets nothing either
    d = stack.start(
        "sub",
        "--broker",
        stack.broker,
        "--prefer",
        stack.mirror,
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(stack.tmp / "d"),
        "--source-token",
        f"{stack.mirror}={ada}",
    ).url
    wait_root(d, "demo", source=stack.mirror)
    r = httpx.put(f"{d}/v1/roots/demo/follow")
    assert is_json_error(r, 502, "source_refused"), r.text
    assert "refused this subscriber" in r.json()["error"]["message"]

    # the admin of M grants ada demo: D now reads through M
    done = cli("user", "grant", ADA, "demo", "--users", str(stack.users))
    assert done.returncode == 0, done.stderr
    assert httpx.put(f"{d}/v1/roots/demo/follow").status_code == 200
    r = httpx.get(f"{d}/v1/roots/demo/data/grid.b2nd", params={"sel": "3:9, 1::4"})
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.load(io.BytesIO(r.content)), GRID[3:9, 1::4])


def test_a_source_announced_over_mqtt_never_sees_the_token(spawn, tmp_path):
    """The token goes to the source it was given for, not to whoever announces the root: a
    listener announced as a mirror on the subscriber's own broker (which outranks the origin)
    gets no Authorization header; the origin, once the fake is gone, gets the token."""
    (tmp_path / "tokens").write_text(T1 + "\n")
    broker = spawn("bro", "--port", "0", "--statedir", str(tmp_path / "bro")).url
    origin = spawn(
        "pub",
        "demo",
        str(tiny_root(tmp_path / "demo")),
        "--broker",
        broker,
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "pub"),
        "--require-token-file",
        str(tmp_path / "tokens"),
    ).url
    origin_id = httpx.get(f"{origin}/v1/health", headers=bearer(T1)).json()["pub_id"]
    sub = spawn(
        "sub",
        "--broker",
        broker,
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "sub"),
        "--source-token",
        f"{origin}={T1}",
    ).url
    fake = FakeSource(
        lambda handler: send_json(
            handler,
            503,
            json.dumps({"error": {"code": "unavailable", "message": "a fake"}}).encode(),
        )
    )
    try:
        announce(broker, "fake-mirror", "demo", fake.url, origin=origin_id)
        wait_root(sub, "demo", source=fake.url)
        r = httpx.put(f"{sub}/v1/roots/demo/follow", timeout=30)
        assert r.status_code >= 400, r.text  # the fake answered 503
        assert fake.requests, "the subscriber never asked the fake source"
        assert all(
            "authorization" not in {k.lower() for k in headers} for _, _, headers in fake.requests
        ), fake.requests
    finally:
        fake.close()

    announce(broker, "fake-mirror", "demo", fake.url, origin=origin_id, state="offline")
    wait_root(sub, "demo", source=origin)
    assert httpx.put(f"{sub}/v1/roots/demo/follow", timeout=30).status_code == 200
    r = httpx.get(f"{sub}/v1/roots/demo/data/grid.b2nd", params={"sel": "0:5"})
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.load(io.BytesIO(r.content)), GRID[0:5])
