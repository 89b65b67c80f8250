"""Importing caterva, or making a client, changes nothing process-wide in other libraries: such
settings are made where a service or a decoder starts (issue 15: no patches at import)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def value_after(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.strip()


@pytest.mark.parametrize(
    "statement",
    [
        "import caterva.protocol.layout, caterva.protocol.gather",
        "import caterva.client, caterva.protocol.gather",
    ],
)
def test_importing_the_layout_keeps_blosc2_s_gil_setting(statement):
    code = f"{statement}; import blosc2; print(blosc2.set_releasegil(False))"
    assert value_after(code) == "False"


def test_decoding_on_threads_releases_the_gil():
    """Gather decodes on worker threads (a client's, a subscriber's): blosc2 drops the GIL."""
    code = (
        "import blosc2, numpy as np\n"
        "from caterva.protocol.gather import Gather\n"
        "from caterva.protocol.layout import describe\n"
        "a = blosc2.asarray(np.arange(20.0), chunks=(10,), blocks=(5,))\n"
        "info = describe(a, 'a.b2nd', 'b2nd', size=0, mtime=0)\n"
        "Gather(info, (slice(0, 20, 1),))\n"
        "print(blosc2.set_releasegil(False))"
    )
    assert value_after(code) == "True"


def test_a_source_client_leaves_httpcore_as_it_is():
    code = (
        "import httpcore\n"
        "from caterva.subscriber import upstream\n"
        "upstream.new_client()\n"
        "print(httpcore.AsyncHTTP11Connection.READ_NUM_BYTES)"
    )
    assert value_after(code) == str(64 * 1024)


def test_importing_the_cli_leaves_typer_as_it_is():
    code = (
        "import caterva.cli.app\n"
        "from typer import _coercion, core\n"
        "print(core.build_runtime_param is _coercion.build_runtime_param)"
    )
    assert value_after(code) == "True"
