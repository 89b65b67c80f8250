"""Root names and dataset paths: what is valid, checked before anything touches a topic or a disk.

A root name is one segment of letters, digits, ``.``, ``_`` and ``-`` (at most 64, not
starting with a dot). A dataset path is ``/``-separated segments, each non-empty, not ``.`` or
``..``, with no MQTT wildcard (``+``, ``#``), no backslash and no control character. Paths are
always relative: the filesystem check on *resolved* paths lives with the code that opens files.
"""

from __future__ import annotations

import re

from caterva.errors import InvalidName

_ROOT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_BAD_CHARS = re.compile(r"[+#\\\x00-\x1f\x7f]")
MAX_PATH = 1024


def check_root(name: str) -> str:
    if not isinstance(name, str) or not _ROOT.fullmatch(name):
        raise InvalidName(
            f"invalid root name {name!r}: use 1-64 letters, digits, '.', '_' or '-'",
            name=str(name),
        )
    return name


def check_path(path: str) -> str:
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise InvalidName(f"invalid dataset path {path!r}", path=str(path)[:MAX_PATH])
    if path.startswith("/") or _BAD_CHARS.search(path):
        raise InvalidName(f"invalid dataset path {path!r}", path=path)
    if any(seg in ("", ".", "..") for seg in path.split("/")):
        raise InvalidName(f"invalid dataset path {path!r}: empty, '.' or '..' segment", path=path)
    return path


def split_address(address: str) -> tuple[str, str | None]:
    """``root/dir/file.b2nd`` -> (root, 'dir/file.b2nd'); ``root`` -> (root, None)."""
    root, _, path = address.strip().strip("/").partition("/")
    return check_root(root), (check_path(path) if path else None)
