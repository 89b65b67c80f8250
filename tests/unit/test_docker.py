"""docker/, checked statically (no Docker engine here): every caterva service's command parses
with the real CLI, the image's entrypoint is caterva, and what compose mounts exists."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import pytest
import typer
import yaml

import caterva.cli.app

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
CATERVA_SERVICES = sorted(
    name for name, s in SERVICES.items() if s.get("image", "").startswith("caterva")
)


def command_args(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


# Typer >= 0.2x ships its own copy of click (typer._click), whose errors derive from
# typer.TyperException rather than click's; older typer versions use click itself.
USAGE_ERRORS = (click.UsageError, typer.TyperException)


def parse_invocation(args: list[str]):
    """Parse ``caterva ARGS`` down to the subcommand, as click does before invoking it, without
    running anything; return the subcommand's context. Raises one of USAGE_ERRORS (no such
    command or option, missing argument, bad value) if the invocation is invalid.

    ``make_context`` on the top-level group parses only the group's own options and accepts any
    subcommand name and arguments after them, so each subcommand is resolved and parsed in turn.
    """
    ctx = typer.main.get_command(caterva.cli.app.app).make_context(
        "caterva", list(args), resilient_parsing=False
    )
    rest = list(args)
    while hasattr(ctx.command, "resolve_command"):  # a group: TyperGroup or click.Group
        own = [
            p.name
            for p in ctx.command.params  # flags (--version) take no argument
            if p.name != "help" and not getattr(p, "is_flag", False)
        ]
        assert not own, f"group {ctx.info_name} has options {own}: strip them from rest first"
        name, command, rest = ctx.command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx, resilient_parsing=False)
    return ctx


def test_caterva_services_are_found() -> None:
    assert CATERVA_SERVICES == ["publisher", "subscriber"]
    assert "mosquitto" in SERVICES


@pytest.mark.parametrize("name", CATERVA_SERVICES)
def test_command_is_a_valid_caterva_invocation(name: str) -> None:
    args = command_args(SERVICES[name])
    try:
        ctx = parse_invocation(args)
    except USAGE_ERRORS as exc:
        pytest.fail(f"{name}: `caterva {shlex.join(args)}` is invalid: {exc.format_message()}")
    assert ctx.info_name == args[0]  # the entrypoint supplies "caterva"


def test_parse_invocation_rejects_what_click_would() -> None:
    with pytest.raises(USAGE_ERRORS, match="No such option"):
        parse_invocation(["pub", "example", "/data", "--no-such-flag"])
    with pytest.raises(USAGE_ERRORS, match="No such command"):
        parse_invocation(["no-such-command"])
    with pytest.raises(USAGE_ERRORS, match="Missing"):
        parse_invocation(["pub"])
    assert parse_invocation(["pub", "example", "/data", "--http", "0.0.0.0:1"]).params["name"]


def option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


@pytest.mark.parametrize("name", CATERVA_SERVICES)
def test_caterva_service_wiring(name: str) -> None:
    service, args = SERVICES[name], command_args(SERVICES[name])
    assert option(args, "--broker") == "mqtt://mosquitto:1883"
    host, port = option(args, "--http").rsplit(":", 1)
    assert host == "0.0.0.0", "services bind 127.0.0.1 unless told: containers need 0.0.0.0"
    assert f"127.0.0.1:{port}:{port}" in service["ports"]
    assert f":{port}/" in " ".join(service["healthcheck"]["test"])
    assert option(args, "--statedir") == "/state"
    mounts = dict(volume.split(":")[:2][::-1] for volume in service["volumes"])
    assert not mounts["/state"].startswith((".", "/")), "state belongs in a named volume"
    assert service["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    assert service["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}


def test_publisher_serves_the_example_root_read_only() -> None:
    publisher = SERVICES["publisher"]
    args = command_args(publisher)
    assert args[:3] == ["pub", "example", "/data/root-example"]
    assert "../root-example:/data/root-example:ro" in publisher["volumes"]


def test_every_service_has_a_healthcheck() -> None:
    for name, service in SERVICES.items():
        assert service["healthcheck"]["test"][0] == "CMD", name


def test_bind_mounts_exist_and_named_volumes_are_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (DOCKER / source).resolve().exists(), f"{name}: {source} missing"
            else:
                assert source in declared, f"{name}: named volume {source} not declared"


def test_mosquitto_config() -> None:
    mounts = SERVICES["mosquitto"]["volumes"]
    assert "./mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in mounts
    assert SERVICES["mosquitto"]["image"] == "eclipse-mosquitto:2"
    text = (DOCKER / "mosquitto.conf").read_text()
    settings = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert ["listener", "1883", "0.0.0.0"] in settings
    assert ["allow_anonymous", "true"] in settings
    assert ["persistence", "true"] in settings
    assert "password_file" in text and "acl_file" in text  # documented, commented out


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_dockerfile() -> None:
    instructions = dockerfile_instructions()
    last = {keyword.upper(): value for keyword, value in instructions}
    assert last["FROM"] == "python:3.11-slim"
    assert json.loads(last["ENTRYPOINT"]) == ["caterva"]
    assert last["USER"] not in ("root", "0")
    assert any(k == "RUN" and "pip install" in v for k, v in instructions)
    context = (DOCKER / SERVICES["publisher"]["build"]["context"]).resolve()
    for keyword, value in instructions:
        if keyword == "COPY":
            for source in value.split()[:-1]:
                assert (context / source).exists(), f"COPY {source}: not in the build context"
