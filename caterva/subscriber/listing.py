"""A followed root's datasets, in path order, a page at a time (``GET /v1/roots/{root}/datasets``),
read from the subscriber's SQLite index and written out as it is read.

A *pattern* is matched against each dataset's path (relative to its root):

    no wildcard     a prefix: every path that starts with it (``stations/2024-``, ``stations/``)
    ``*``           any characters within one path segment (never ``/``)
    ``?``           one character other than ``/``
    ``**/``         zero or more whole segments (``**/*.b2nd``: every .b2nd, at any depth)
    ``**``          any characters, ``/`` included (``stations/**``: everything below)

A pattern with a wildcard matches whole paths. Everything else is literal (``[`` too: names
may hold brackets), and a path holding ``*`` or ``?`` is matched by ``?``. A pattern is
checked like a path (relative, no ``.`` or ``..`` segment, no control character, at most
MAX_PATH characters; a prefix may end in ``/``): one that points outside the root is
refused (``invalid_name``).

The query is a range scan of the (root, path) index from the pattern's literal start, with
SQLite's GLOB (a coarser match: its ``*`` crosses ``/``) and then the exact one in Python.

The *cursor* continues a listing after the last path an answer held: opaque to clients
(base64url of that path), refused when it is not one this service could have given
(``bad_cursor``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from caterva.errors import BadCursor, InvalidName
from caterva.protocol.names import MAX_PATH, check_path
from caterva.subscriber.state import State

LIMIT = 1000  # datasets an answer holds unless asked otherwise
MAX_LIMIT = 10_000  # the most one answer holds
SCAN = 1000  # rows one query reads
_WILDCARD = re.compile(r"(\*\*/|\*\*|\*|\?)")
_REGEX = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
_CURSOR_TAG = "1:"  # a version of the cursor's form, so a later one can tell old ones apart


@dataclass(frozen=True)
class Match:
    """A pattern, ready to query: every match is in [lo, hi) (hi None: no bound) and
    matches ``glob`` (SQLite GLOB, None: any); with wildcards, ``exact`` decides."""

    lo: str
    hi: str | None = None
    glob: str | None = None
    exact: re.Pattern[str] | None = None

    def __call__(self, path: str) -> bool:
        return self.exact is None or self.exact.fullmatch(path) is not None


def parse(pattern: str) -> Match:
    """The Match of a pattern (module docstring); InvalidName when it is not a valid one."""
    _check(pattern)
    parts = _WILDCARD.split(pattern)
    literal = parts[0]
    if len(parts) == 1:  # no wildcard: a prefix
        return Match(literal, after_prefix(literal))
    regex = "".join(_REGEX[p] if n % 2 else re.escape(p) for n, p in enumerate(parts))
    glob = "".join(
        ("?" if p == "?" else "*") if n % 2 else _glob_literal(p) for n, p in enumerate(parts)
    )
    return Match(literal, after_prefix(literal), re.sub(r"\*+", "*", glob), re.compile(regex))


def _check(pattern: str) -> None:
    if not pattern:
        return  # every dataset
    bad = InvalidName(
        f"invalid pattern {pattern[:MAX_PATH]!r}: a path relative to the root, with * ? or **",
        pattern=pattern[:MAX_PATH],
    )
    try:
        pattern.encode()
    except UnicodeEncodeError:  # a lone surrogate: no path has one, nor could SQLite take it
        raise bad from None
    # wildcards stand for path characters; a prefix may end with its directory's "/"
    as_path = _WILDCARD.sub(lambda m: "x/" if m[0] == "**/" else "x", pattern)
    try:
        check_path(as_path.removesuffix("/") if len(as_path) > 1 else as_path)
    except InvalidName:
        raise bad from None
    if len(pattern) > MAX_PATH:
        raise bad


def _glob_literal(text: str) -> str:
    """Literal text in a SQLite GLOB: only ``[`` would be read as syntax there."""
    return text.replace("[", "[[]")


def after_prefix(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix`` (None: there
    is none). SQLite compares text as UTF-8 bytes, which orders as code points do."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if last <= 0x10FFFF:
            if 0xD800 <= last <= 0xDFFF:  # surrogates are not text: skip them
                last = 0xE000
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


def encode_cursor(path: str) -> str:
    return base64.urlsafe_b64encode((_CURSOR_TAG + path).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The path a cursor continues after; BadCursor when it is not one we give."""
    bad = BadCursor(f"invalid cursor {cursor[:80]!r}: use the `next` of an earlier answer")
    if len(cursor) > 4 * (MAX_PATH * 4 + len(_CURSOR_TAG)) // 3 + 4:
        raise bad
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        if not text.startswith(_CURSOR_TAG):
            raise bad
        return check_path(text.removeprefix(_CURSOR_TAG))
    except (binascii.Error, ValueError, InvalidName):  # UnicodeDecodeError is a ValueError
        raise bad from None


def matches(state: State, root: str, match: Match, after: str) -> Iterator[str]:
    """The paths ``match`` takes after ``after``, in order, a query's worth at a time."""
    while True:
        rows = state.dataset_rows(root, after, match.lo, match.hi, match.glob, SCAN)
        yield from (path for (path,) in rows if match(path))
        if len(rows) < SCAN:
            return
        after = rows[-1][0]


def page_end(state: State, root: str, match: Match, limit: int, after: str) -> tuple[str, bool]:
    """The last path of the page of ``limit`` matches after ``after`` ("" when it is empty),
    and whether more match: the paths alone, read before the page is written, so its cursor
    can go in a header."""
    last = ""
    for path in matches(state, root, match, after):
        if limit == 0:
            return last, True
        last, limit = path, limit - 1
    return last, False


async def lines(
    state: State, root: str, match: Match, after: str, end: str, followed: Callable[[], bool]
) -> AsyncIterator[bytes]:
    """The matches after ``after`` up to ``end``, one JSON object a line (each dataset's info
    without chunk digests, cut by SQLite: never decoded here), a query's worth at a time."""
    scanned = after
    while scanned < end:
        if not followed():  # unfollowed meanwhile: an answer cut short, never a wrong one
            return
        rows = state.dataset_rows(root, scanned, match.lo, match.hi, match.glob, SCAN, True)
        taken = [summary for path, summary in rows if path <= end and match(path)]
        if taken:
            yield "\n".join(taken).encode() + b"\n"
        if len(rows) < SCAN:
            return
        scanned = rows[-1][0]
