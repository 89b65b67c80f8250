"""What an operator meets at the edges of a service: a state directory already in use, API
pages read without internet, a mirror's id, the config file's keys, the license."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
import pytest

from tests.conftest import EXAMPLE, ROOT, free_port


def test_a_second_subscriber_on_the_same_state_is_refused(spawn, tmp_path):
    """Two subscribers on one state directory broke each other (an unfollow on the second
    gave the first sqlite3.IntegrityError): the second is refused, the first unharmed."""
    env = {"CATERVA_STATEDIR": str(tmp_path / "state")}  # the default, as without --statedir
    broker = f"mqtt://127.0.0.1:{free_port()}"  # none needed: they serve without one
    first = spawn("sub", "--broker", broker, "--http", "127.0.0.1:0", env=env)
    second = spawn("sub", "--broker", broker, "--http", "127.0.0.1:0", env=env, wait=False)
    assert second.proc.wait(timeout=15) == 1
    state = tmp_path / "state" / "subscriber"
    log = second.log_path.read_text()
    assert (
        log == f"error: another subscriber is using the state directory {state}: give "
        "this one its own --statedir\n"
    ), log
    assert first.proc.poll() is None


@pytest.mark.parametrize("service", ["pub", "sub"])
def test_docs_pages_need_nothing_but_the_service(service, spawn, tmp_path):
    """/docs and /redoc were blank without internet (their scripts came from a CDN): every
    script, style and icon they reference is served by the service itself, to anyone (the
    publisher requires a token here: the API's description stays readable)."""
    broker = f"mqtt://127.0.0.1:{free_port()}"
    args = (
        ["pub", "example", str(EXAMPLE), "--require-token", "secret"]
        if service == "pub"
        else ["sub"]
    )
    svc = spawn(
        *args, "--broker", broker, "--http", "127.0.0.1:0", "--statedir", str(tmp_path / service)
    )
    with httpx.Client(base_url=svc.url, timeout=10) as http:
        for page in ("/docs", "/redoc"):
            html = http.get(page)
            assert html.status_code == 200 and "text/html" in html.headers["content-type"]
            assert not re.search(r"https?://", html.text), html.text
            urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
            assert "/openapi.json" in urls and len(urls) >= 3, html.text
            for url in urls:
                assert url.startswith("/"), f"{page} references {url}"
                assert http.get(url).status_code == 200, url


def test_a_mirror_takes_its_id_from_pub_id(spawn, tmp_path):
    """`via lab-mirror-1` took broker logins (the id was the MQTT username or generated)."""
    broker = f"mqtt://127.0.0.1:{free_port()}"
    sub = spawn(
        "sub",
        "--broker",
        broker,
        "--http",
        "127.0.0.1:0",
        "--republish",
        "--pub-id",
        "lab-mirror-1",
        "--statedir",
        str(tmp_path / "sub"),
    )
    assert httpx.get(f"{sub.url}/v1/health").json()["mirror"]["pub_id"] == "lab-mirror-1"
    other = spawn(
        "sub",
        "--broker",
        f"mqtt://alice:pw@127.0.0.1:{free_port()}",
        "--republish",
        "--pub-id",
        "bob",
        "--statedir",
        str(tmp_path / "other"),
        wait=False,
    )
    assert other.proc.wait(timeout=15) == 2
    assert (
        other.log_path.read_text() == "error: --pub-id 'bob' differs from the MQTT username "
        "'alice': with broker auth a mirror may write only under it\n"
    )


def test_an_unknown_key_in_caterva_toml_is_refused_naming_file_and_key(tmp_path):
    """A typo (here of cache_size; of require_token it would leave a service open) passed
    silently."""
    config = tmp_path / "caterva.toml"
    config.write_text('[caterva]\nsub = "http://127.0.0.1:1"\ncache_sise = "1GB"\n')
    for args in (["roots"], ["sub", "--statedir", str(tmp_path / "sub")]):
        done = subprocess.run(
            [sys.executable, "-m", "caterva", *args],
            capture_output=True,
            text=True,
            env={**os.environ, "CATERVA_CONFIG": str(config)},
            timeout=30,
            check=False,
        )
        assert (done.returncode, done.stdout) == (2, ""), done.stderr
        assert (
            done.stderr == f"error: config file {config}: unknown setting 'cache_sise' "
            "(did you mean 'cache_size'?)\n"
        )


def test_the_license_file_is_the_one_pyproject_names():
    license_text = (ROOT / "LICENSE").read_text()
    assert 'license = "BSD-3-Clause"' in (ROOT / "pyproject.toml").read_text()
    assert license_text.startswith("BSD 3-Clause License\n")
    assert "Copyright (c) 2026, the caterva developers" in license_text
