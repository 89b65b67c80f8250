"""The floors: plain HTTP moving the same bytes from a static server (curl, else httpx).

Every ratio in the report is against one of these, measured in the same run: a whole cube, the
first bytes of one (as many as the selected chunks hold), one tiny file, or every file of the
many-dataset root through one curl process and one connection; and, for whole cubes, ``cp``
of the stored file: no download can land the same bytes in a file faster than that.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx

from benchmarks.result import Result, timed


class Floors:
    """Mixed into Bench: uses its layout, scratch, repeat and record()."""

    def baseline(
        self,
        path: str,
        label: str,
        server: str,
        url: str,
        nbytes: int | None = None,
        name: str | None = None,
    ) -> Result:
        """A plain HTTP download of the same file (its first ``nbytes``, as one range) from a
        static server serving the data directory: curl, else httpx."""
        source = self.layout.base / path
        dest = self.scratch / f"baseline-{source.name}"
        url = f"{url}/{path}"
        curl = shutil.which("curl")
        ranged = ["-r", f"0-{nbytes - 1}"] if nbytes else []

        def fetch():
            if curl:
                subprocess.run([curl, "-sSf", *ranged, "-o", str(dest), url], check=True)
            else:
                _httpx_download(url, dest, nbytes)

        result = Result(
            f"{server}_{name or Path(path).stem}",
            label,
            nbytes=nbytes or source.stat().st_size,
            note=f"{server} + {'curl' if curl else 'httpx'}",
        )
        for _ in range(self.repeat):
            dest.unlink(missing_ok=True)
            result.times.append(timed(fetch, settle=True))
        result.verified = _same_bytes(source, dest, nbytes)
        dest.unlink()
        return self.record(result)

    def copy_floor(self, path: str) -> Result:
        """The stored file copied to a new file by ``cp`` (no network, no process between):
        what landing those bytes in a file costs at least on this machine, page cache warm."""
        source = self.layout.base / path
        dest = self.scratch / f"copy-{source.name}"
        result = Result(
            f"cp_{Path(path).stem}",
            f"floor: cp, {source.name} to a new file",
            nbytes=source.stat().st_size,
            note="cp",
        )
        command = ["cp", str(source), str(dest)]
        for n in range(self.repeat + 1):  # the first, untimed, reads the source into memory
            dest.unlink(missing_ok=True)
            took = timed(lambda: subprocess.run(command, check=True), settle=True)
            if n:
                result.times.append(took)
        result.verified = _same_bytes(source, dest)
        dest.unlink()
        return self.record(result)

    def baseline_many(self, server: str, url: str) -> Result:
        """The many-dataset root as plain files: one curl process, one connection, every file."""
        dest = self.scratch / "baseline-many"
        paths = list(map(self.layout.small_path, range(self.layout.datasets)))
        config = self.scratch / "baseline-many.curl"
        config.write_text(
            "".join(f'url = "{url}/many/{p}"\noutput = "{dest / p}"\n' for p in paths)
        )
        command = ["curl", "-sSf", "--create-dirs", "-K", str(config)]
        result = Result(f"{server}_many", f"baseline: {server}, {len(paths)} files", note="curl -K")
        for _ in range(self.repeat):
            shutil.rmtree(dest, ignore_errors=True)
            result.times.append(timed(lambda: subprocess.run(command, check=True), settle=True))
        result.verified = all(_same_bytes(self.layout.many / p, dest / p) for p in paths)
        shutil.rmtree(dest)
        return self.record(result)


def _httpx_download(url: str, dest: Path, nbytes: int | None = None) -> None:
    headers = {"Range": f"bytes=0-{nbytes - 1}"} if nbytes else None
    with httpx.stream("GET", url, headers=headers) as response, open(dest, "wb") as f:
        response.raise_for_status()
        for part in response.iter_raw(1 << 20):
            f.write(part)


def _same_bytes(a: Path, b: Path, nbytes: int | None = None, block: int = 1 << 24) -> bool:
    """``b`` holds the bytes of ``a`` (its first ``nbytes``, when given)."""
    if nbytes is not None:
        with open(a, "rb") as x:
            return b.stat().st_size == nbytes and x.read(nbytes) == b.read_bytes()
    with open(a, "rb") as x, open(b, "rb") as y:
        while True:
            u, v = x.read(block), y.read(block)
            if u != v:
                return False
            if not u:
                return True
