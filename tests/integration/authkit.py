"""Helpers of the auth tests (tests/integration/test_auth*.py): a tiny root, a users database,
the CLI as a child process, every route of an OpenAPI document, and a test CA made with the
``openssl`` command (the ``cryptography`` package is not a dependency)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import blosc2
import httpx
import numpy as np

from caterva.users import Users
from tests.conftest import ROOT

GRID = np.arange(30 * 40, dtype=np.float64).reshape(30, 40)
PASSWORD = "correct horse battery"
MUTATING = ("post", "put", "patch", "delete")


def tiny_root(directory: Path) -> Path:
    directory.mkdir(parents=True)
    blosc2.asarray(
        GRID, urlpath=str(directory / "grid.b2nd"), mode="w", chunks=(10, 10), blocks=(5, 5)
    )
    (directory / "notes.txt").write_text("caterva notes\n" * 100)
    return directory


def make_users(path: Path, grants: dict[str, list[str]]) -> Path:
    with Users.open(path) as db:
        for email, roots in grants.items():
            db.add(email, PASSWORD)
            for root in roots:
                db.grant(email, root)
    return path


def cli(*args: str, env: dict[str, str] | None = None, input: str | None = None):
    """``caterva ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "caterva", *args],
        capture_output=True,
        text=True,
        input=input,
        env={**os.environ, "CATERVA_CONFIG": "/nonexistent", **(env or {})},
        cwd=ROOT,
        timeout=60,
    )


def login(url: str, email: str, **kwargs) -> str:
    r = httpx.post(f"{url}/v1/login", json={"email": email, "password": PASSWORD}, **kwargs)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_root(url: str, root: str, headers=None, timeout: float = 15, verify=True, **want) -> dict:
    """Poll /v1/roots until ``root`` is there, online and with the ``want``ed fields:
    announcements arrive when they arrive, and the API offers no other signal for them."""
    deadline = time.monotonic() + timeout
    want = {"online": True, **want}
    while True:
        listing = httpx.get(f"{url}/v1/roots", headers=headers, verify=verify).json()["roots"]
        found = next((r for r in listing if r["root"] == root), None)
        if found and all(found.get(k) == v for k, v in want.items()):
            return found
        assert time.monotonic() < deadline, f"root {root} never announced at {url}: {listing}"
        time.sleep(0.02)


PLACEHOLDERS = {"root": "{root}", "path": "grid.b2nd", "index": "0"}


def routes(openapi: dict, root: str) -> list[tuple[str, str, str]]:
    """(method, template, concrete URL path) of every operation, with placeholder values."""
    out = []
    for template, operations in openapi["paths"].items():
        concrete = re.sub(
            r"\{(\w+)(?::path)?\}",
            lambda m: PLACEHOLDERS.get(m.group(1), "x").format(root=root),
            template,
        )
        for method in operations:
            out.append((method, template, concrete))
    assert out, "the OpenAPI document lists no routes"
    return out


def request_for(method: str, template: str) -> dict:
    """httpx.request arguments that make a valid request of a route, so a 4xx can only come
    from auth: required query parameters, and the body of the multi-dataset batch."""
    if template.endswith("/chunks/{path}"):
        return {"params": {"i": "0"}}
    if method == "post" and template.endswith("/chunks"):
        return {"json": {"datasets": [{"path": PLACEHOLDERS["path"], "i": "0"}]}}
    return {}


def is_json_error(response: httpx.Response, status: int, code: str | None = None) -> bool:
    if response.status_code != status:
        return False
    body = response.json()
    return isinstance(body.get("error"), dict) and (code is None or body["error"]["code"] == code)


# --- a test CA --------------------------------------------------------------------------------


def make_ca(directory: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it (openssl CLI)."""
    directory.mkdir(parents=True, exist_ok=True)
    d = directory

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=caterva test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    )
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}


def demo_root(
    spawn,
    tmp_path: Path,
    broker: str,
    data: Path | None = None,
    *pub_args: str,
    sub_args: tuple[str, ...] = (),
    sub_env: dict[str, str] | None = None,
    follow: bool = True,
    sub_broker: str | None = None,
):
    """A publisher of ``data`` (a tiny root by default) as root demo and a subscriber that
    follows it (on ``sub_broker``, if given, else on the publisher's): (publisher,
    subscriber, an httpx client of the subscriber's /v1)."""
    data = data or tiny_root(tmp_path / "data")
    pub = spawn(
        "pub",
        "demo",
        str(data),
        "--broker",
        broker,
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "pub"),
        *pub_args,
    )
    sub = spawn(
        "sub",
        "--broker",
        sub_broker or broker,
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "sub"),
        *sub_args,
        env=sub_env,
    )
    wait_root(sub.url, "demo")
    http = httpx.Client(base_url=f"{sub.url}/v1", timeout=30)
    if follow:
        assert http.put("/roots/demo/follow").status_code == 200
    return pub, sub, http
