"""scripts/test installs what the suite needs with apt-get: it must wait for a held lock."""

from __future__ import annotations

import os
import shutil
import subprocess

from tests.conftest import ROOT


def test_scripts_test_waits_for_the_apt_lock(tmp_path):
    """Another apt-get holding the package lock made scripts/test fail at once (rc 100).
    Here openssl is "missing" (a PATH without it) and apt-get is a stand-in recording its
    arguments; its install step fails, which ends the script before any set-up."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in ("dirname", "id"):
        os.symlink(shutil.which(tool), bin_ / tool)
    calls = tmp_path / "calls"
    (bin_ / "apt-get").write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\ncase "$*" in *install*) exit 100;; esac\n'
    )
    (bin_ / "apt-get").chmod(0o755)
    env = {"PATH": str(bin_), "HOME": str(tmp_path)}
    done = subprocess.run(
        ["/bin/bash", str(ROOT / "scripts" / "test")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 100, done.stderr
    update, install = calls.read_text().splitlines()
    for call in (update, install):
        assert call.startswith("-o DPkg::Lock::Timeout="), call
    assert update.endswith("update -qq") and "openssl" in install.split()
