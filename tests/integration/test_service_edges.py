"""What an operator meets at the edges of a service: a state directory already in use, API
pages read without internet."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import EXAMPLE, free_port


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
    assert log == f"error: another subscriber is using the state directory {state}: give " \
        "this one its own --statedir\n", log
    assert first.proc.poll() is None


@pytest.mark.parametrize("service", ["pub", "sub"])
def test_docs_pages_need_nothing_but_the_service(service, spawn, tmp_path):
    """/docs and /redoc were blank without internet (their scripts came from a CDN): every
    script, style and icon they reference is served by the service itself, to anyone (the
    publisher requires a token here: the API's description stays readable)."""
    broker = f"mqtt://127.0.0.1:{free_port()}"
    args = (["pub", "example", str(EXAMPLE), "--require-token", "secret"] if service == "pub"
            else ["sub"])
    svc = spawn(*args, "--broker", broker, "--http", "127.0.0.1:0",
                "--statedir", str(tmp_path / service))
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
    sub = spawn("sub", "--broker", broker, "--http", "127.0.0.1:0", "--republish",
                "--pub-id", "lab-mirror-1", "--statedir", str(tmp_path / "sub"))
    assert httpx.get(f"{sub.url}/v1/health").json()["mirror"]["pub_id"] == "lab-mirror-1"
    other = spawn("sub", "--broker", f"mqtt://alice:pw@127.0.0.1:{free_port()}", "--republish",
                  "--pub-id", "bob", "--statedir", str(tmp_path / "other"), wait=False)
    assert other.proc.wait(timeout=15) == 2
    assert other.log_path.read_text() == "error: --pub-id 'bob' differs from the MQTT username " \
        "'alice': with broker auth a mirror may write only under it\n"
