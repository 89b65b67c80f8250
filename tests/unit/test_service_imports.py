"""A service imports what every request needs at start, and the rest when first asked: the
web page's templates and arrays, the Caterva2 API's numpy model and h5py cost the resident
memory of every subscriber and publisher that never serves them (issue: peak RSS targets)."""

from __future__ import annotations

import os
import subprocess
import sys

# What `caterva sub` / `caterva pub` run up to serving: the CLI, the app, its routes.
BUILD = """
import sys
from pathlib import Path
from caterva.cli import app as cli
{build}
print(*[m for m in sys.modules if sys.modules[m] is not None])
"""
SUBSCRIBER = """
from caterva.subscriber.app import create_app
from caterva.subscriber.settings import SubscriberSettings
create_app(SubscriberSettings(("mqtt://127.0.0.1:9",), "127.0.0.1", 0, Path("."), 1), "u")
"""
PUBLISHER = """
import tempfile
import caterva.publisher.app
from caterva.protocol.seal import sign
from caterva.publisher.signing import load_key
sign(load_key(Path(tempfile.mkdtemp())), root="r", origin="o", version=1, manifest_etag="e")
"""
LATER = {"jinja2", "markupsafe", "markdown_it", "h5py", "caterva.subscriber.c2model"}
# Ed25519 only: cryptography's serialization package imports its SSH code (and bcrypt)
KEYS = {"bcrypt", "cryptography.hazmat.primitives.serialization"}


def modules(build: str) -> set[str]:
    env = {**os.environ, "CATERVA_CONFIG": "/nonexistent"}
    proc = subprocess.run(
        [sys.executable, "-c", BUILD.format(build=build)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = set(proc.stdout.split())
    assert "fastapi" in found  # the check sees real imports
    return found | {m.split(".")[0] for m in found}


def test_a_subscriber_imports_the_page_and_caterva2_api_when_first_asked():
    found = modules(SUBSCRIBER)
    assert "caterva.subscriber.web.routes" in found and "caterva.subscriber.c2compat" in found
    assert not found & (LATER | {"numpy", "blosc2", "caterva.subscriber.web.pages"})


def test_a_publisher_imports_h5py_only_for_an_hdf5_file_and_signs_with_ed25519_alone():
    found = modules(PUBLISHER)
    assert "cryptography.hazmat.primitives.asymmetric.ed25519" in found
    assert not found & (LATER | KEYS)
