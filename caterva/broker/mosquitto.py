"""The Mosquitto engine: write a config into the statedir, run ``mosquitto -c`` as a child.

Ready means Mosquitto logged that it is running (it does so after opening its listeners);
a child that exits before then is reported with its own error line. SIGINT/SIGTERM are
passed on as SIGTERM, which makes Mosquitto save its database and exit.

The binary is ``$CATERVA_MOSQUITTO`` if set (a path or a name), else ``mosquitto`` on PATH
or in the sbin directories, which Debian puts it in but a user's PATH often lacks.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from caterva.broker import access, broker_url
from caterva.errors import BadRequest, CatervaError, Unavailable
from caterva.service.runner import ready

log = logging.getLogger("caterva.broker")

SBIN = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin")
INSTALL_HINT = "install it with `apt-get install mosquitto` (or your system's package manager)"


def find_binary() -> str:
    wanted = os.environ.get("CATERVA_MOSQUITTO") or "mosquitto"
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN])
    found = shutil.which(wanted, path=search)
    if not found:
        raise CatervaError(f"Mosquitto not found ({wanted}): {INSTALL_HINT}")
    return found


def config_text(
    host: str,
    port: int,
    statedir: Path,
    *,
    verbose: bool = False,
    secured: bool = False,
    tls: tuple[str, str] | None = None,
) -> str:
    """``secured``: accounts in <statedir>/passwd and topic rules in <statedir>/acl."""
    for value in (host, str(statedir), *(tls or ())):
        if "\n" in value or "\r" in value:
            raise BadRequest(f"{value!r} cannot go into a mosquitto.conf")
    access_lines = (
        [
            "allow_anonymous false",
            f"password_file {statedir / 'passwd'}",
            f"acl_file {statedir / 'acl'}",
        ]
        if secured
        else ["allow_anonymous true"]
    )
    tls_lines = [f"certfile {tls[0]}", f"keyfile {tls[1]}"] if tls else []
    return "\n".join(
        [
            "# written by `caterva bro --engine mosquitto`; rewritten on every start",
            f"listener {port} {host}",
            *tls_lines,  # listener options: they follow their listener line
            *access_lines,
            "persistence true",
            f"persistence_location {statedir}",  # Mosquitto adds the slash
            "autosave_interval 60",  # retained messages survive a crash too, not only a clean stop
            # a subscriber starts with one retained message per root and source, all at once:
            # beyond this queue Mosquitto drops the rest silently (its default is 1000)
            "max_queued_messages 100000",
            "log_dest stderr",
            "log_timestamp false",  # our log lines carry the time
            f"connection_messages {'true' if verbose else 'false'}",  # one line per client: -v only
            # as root Mosquitto switches to user "mosquitto", who cannot write our 0700 statedir
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            "",
        ]
    )


def write_config(
    host: str,
    port: int,
    statedir: Path,
    accounts: dict[str, str] | None = None,
    tls: tuple[str, str] | None = None,
) -> Path:
    if accounts:
        access.write_private(statedir / "passwd", access.password_file_text(accounts))
        access.write_private(statedir / "acl", access.MOSQUITTO_ACL)
    path = statedir / "mosquitto.conf"
    path.write_text(
        config_text(
            host,
            port,
            statedir,
            verbose=log.isEnabledFor(logging.DEBUG),
            secured=bool(accounts),
            tls=tls,
        )
    )
    return path


def serve(
    host: str,
    port: int,
    statedir: Path,
    accounts: dict[str, str] | None = None,
    tls: tuple[str, str] | None = None,
) -> None:
    if port == 0:
        raise BadRequest("--engine mosquitto needs an explicit port, not 0")
    binary = find_binary()
    conf = write_config(host, port, statedir, accounts, tls)
    child = subprocess.Popen(
        [binary, "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        preexec_fn=_die_with_parent(),
    )
    stopping = threading.Event()

    def stop(signum, frame) -> None:
        stopping.set()
        child.terminate()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        early_exit = _wait_running(child)
        if early_exit is not None:  # the child ended before it was running
            if stopping.is_set():
                return
            raise _startup_error(early_exit, child.wait(), host, port)
        url = broker_url(host, port, tls=bool(tls))
        log.info("MQTT broker (Mosquitto %s) listening on %s; state in %s", binary, url, statedir)
        ready("broker", url)
        forwarder = threading.Thread(target=_forward, args=(child.stderr,), daemon=True)
        forwarder.start()
        code = child.wait()
        forwarder.join(timeout=2)  # its last lines say whether the database was saved
        if not stopping.is_set():
            raise CatervaError(f"Mosquitto exited unexpectedly (exit code {code})")
        log.info("MQTT broker stopped")
    finally:
        if child.poll() is None:  # we are failing: do not leave a broker behind
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


def _wait_running(child: subprocess.Popen) -> list[str] | None:
    """Relay the child's log until it says it is running (None), or return it all on exit."""
    lines = []
    for line in child.stderr:
        line = line.rstrip()
        lines.append(line)
        if not line.startswith("Error"):  # errors go into the exception instead
            _relay(line)
        if line.startswith("mosquitto version") and line.endswith(" running"):
            return None
    return lines


def _startup_error(lines: list[str], code: int, host: str, port: int) -> CatervaError:
    errors = [line.removeprefix("Error: ") for line in lines if line.startswith("Error")]
    reason = "; ".join(errors) or f"exit code {code}"
    if any("address" in e.lower() for e in errors):
        return Unavailable(f"cannot listen on {host}:{port}: {reason}")
    return CatervaError(f"Mosquitto did not start: {reason}")


def _forward(stream) -> None:
    for line in stream:
        _relay(line.rstrip())


def _relay(line: str) -> None:
    """Mosquitto's log, in ours: its warnings and errors show, the rest with -v."""
    level = logging.WARNING if line.startswith(("Warning", "Error")) else logging.DEBUG
    log.log(level, "mosquitto: %s", line)


def _die_with_parent():
    """A pre-exec hook that makes the child get SIGTERM when we die without stopping it
    (kill -9), so no orphan keeps the port. Linux only; prepared before the fork."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    PR_SET_PDEATHSIG = 1
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
