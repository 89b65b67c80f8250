"""The layering, pinned: the library a reader imports (the client, the wire protocol, the CLI
at start-up) never loads the web framework or any daemon's code; only the daemons do."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

DAEMONS = ("caterva.service", "caterva.publisher", "caterva.subscriber", "caterva.broker")
WEB = ("fastapi", "starlette", "uvicorn", "amqtt")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    "statement",
    [
        "import caterva",
        "import caterva.client",
        "from caterva.client import Client, AsyncClient",
        "import caterva.protocol.rest, caterva.protocol.seal, caterva.protocol.gather",
        "import caterva.cli.app",
    ],
)
def test_the_library_never_loads_the_web_framework_or_a_daemon(statement):
    loaded = loaded_after(statement)
    assert not {m for m in loaded if m.split(".")[0] in WEB}, statement
    assert not {m for m in loaded if m.startswith(DAEMONS)}, statement


def test_the_daemons_are_inside_the_caterva_package():
    loaded = loaded_after("import caterva.subscriber.app, caterva.publisher.app")
    assert "services" not in {m.split(".")[0] for m in loaded}
