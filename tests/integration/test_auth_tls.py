"""TLS everywhere, with a test CA made by the ``openssl`` command: the broker speaks MQTTS, the
publisher and the subscriber serve HTTPS, and every client verifies against the CA. A client
without the CA is refused with an error that says what to do."""

from __future__ import annotations

import ssl

import httpx
import numpy as np
import pytest

from caterva.client import Client
from caterva.errors import Unavailable
from tests.conftest import Services
from tests.integration.authkit import GRID, cli, make_ca, tiny_root, wait_root


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    ca = make_ca(tmp / "ca")
    files = ["--tls-cert", str(ca["cert"]), "--tls-key", str(ca["key"])]
    services = Services(tmp)
    try:
        broker = services.start("bro", "--port", "0", "--statedir", str(tmp / "bro"), *files).url
        assert broker.startswith("mqtts://")
        pub = services.start(
            "pub",
            "demo",
            str(tiny_root(tmp / "demo")),
            "--broker",
            broker,
            "--ca-file",
            str(ca["ca"]),
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(tmp / "pub"),
            *files,
            wait=False,
        )
        sub = services.start(
            "sub",
            "--broker",
            broker,
            "--ca-file",
            str(ca["ca"]),
            "--http",
            "127.0.0.1:0",
            "--statedir",
            str(tmp / "sub"),
            *files,
            wait=False,
        )
        yield {"ca": ca["ca"], "pub": pub.wait_ready(), "sub": sub.wait_ready()}
    finally:
        services.close()


def test_publisher_and_subscriber_serve_https_and_read_over_tls(tls):
    assert tls["pub"].startswith("https://") and tls["sub"].startswith("https://")
    verify = ssl.create_default_context(cafile=tls["ca"])
    root = wait_root(tls["sub"], "demo", verify=verify)  # announced over MQTTS
    assert root["source"] == tls["pub"]
    with Client(tls["sub"], ca_file=tls["ca"]) as client:
        client.follow("demo")  # the subscriber fetched the manifest over HTTPS
        grid = client.dataset("demo/grid.b2nd")
        np.testing.assert_array_equal(grid[4:17, ::3], GRID[4:17, ::3])


def test_a_client_without_the_ca_is_refused_clearly(tls):
    with Client(tls["sub"]) as client, pytest.raises(Unavailable) as refused:
        client.roots()
    assert "cannot verify the TLS certificate" in str(refused.value)
    assert "--ca-file" in str(refused.value)
    with pytest.raises(httpx.ConnectError):  # nor does plain httpx take it on trust
        httpx.get(f"{tls['pub']}/v1/health")

    done = cli("roots", "--sub", tls["sub"])
    assert done.returncode == 4
    assert "cannot verify the TLS certificate" in done.stderr and "--ca-file" in done.stderr
    assert cli("roots", "--sub", tls["sub"], "--ca-file", str(tls["ca"])).returncode == 0
    env = {"CATERVA_CA_FILE": str(tls["ca"])}
    assert cli("roots", "--sub", tls["sub"], env=env).returncode == 0


def test_plain_http_to_an_https_service_is_a_clear_error(tls):
    plain = tls["sub"].replace("https://", "http://")
    with Client(plain) as client, pytest.raises(Unavailable):
        client.roots()


@pytest.mark.parametrize("service", ["pub", "sub"])
def test_a_missing_ca_file_in_the_broker_url_is_a_usage_error(service, spawn, tmp_path):
    """`?cafile=` of an mqtts:// URL is checked before anything starts: one line, no
    traceback (it was a FileNotFoundError from ssl when the first connection was made)."""
    (tmp_path / "data").mkdir()
    args = ["pub", "demo", str(tmp_path / "data")] if service == "pub" else ["sub"]
    started = spawn(
        *args,
        "--broker",
        f"mqtts://127.0.0.1:1?cafile={tmp_path}/no-ca.pem",
        "--http",
        "127.0.0.1:0",
        "--statedir",
        str(tmp_path / "state"),
        wait=False,
    )
    assert started.proc.wait(timeout=30) == 2
    log = " ".join(started.log_path.read_text().split())
    assert "no-ca.pem" in log and "Traceback" not in log
