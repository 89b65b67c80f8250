"""A followed root's datasets a page at a time (``GET /v1/roots/{root}/datasets``), with no
I/O: ``Pager`` gives the Call of each next page and keeps the cursor, so ``Client.pages`` and
``AsyncClient.pages`` only send them. A pattern is a path prefix or a glob (``*`` within a
segment, ``?``, ``**`` across): see caterva/subscriber/listing.py for the rules.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from caterva.client.calls import Call, root_path
from caterva.errors import BadRequest, ProtocolError
from caterva.protocol import rest

PAGE = 10_000  # datasets asked per request (the most a subscriber gives): few requests


@dataclass(frozen=True)
class Page:
    """Datasets in path order, and ``next``: the cursor of the page after this one (None:
    this page ends the listing). ``lines`` are the datasets as the subscriber sent them, one
    JSON object each; ``datasets`` the same decoded, each a dict (its info without chunk
    digests, as ``caterva list --json`` shows it)."""

    lines: list[bytes]
    next: str | None

    @functools.cached_property
    def datasets(self) -> list[dict[str, Any]]:
        try:  # one decoder call for the page, not one a line
            datasets = json.loads(b"[" + b",".join(self.lines) + b"]")
        except (ValueError, RecursionError) as exc:
            raise ProtocolError("the subscriber sent a listing that is not JSON") from exc
        if not all(isinstance(d, dict) and isinstance(d.get("path"), str) for d in datasets):
            raise ProtocolError("the subscriber sent an invalid dataset entry")
        return datasets


def _page(response: Any) -> Page:
    lines = response.content.splitlines()
    # each line one JSON object: what --json copies out undecoded stays one document
    if not all(line[:1] == b"{" and line[-1:] == b"}" for line in lines):
        raise ProtocolError("the subscriber sent an invalid listing")
    return Page(lines, response.headers.get(rest.NEXT_HEADER))


class Pager:
    """The pages of one listing: at most ``limit`` datasets (None: all) of ``root`` matching
    ``pattern``, after ``cursor`` (None: from the first)."""

    def __init__(
        self, root: str, pattern: str = "", limit: int | None = None, cursor: str | None = None
    ) -> None:
        if limit is not None and limit < 0:
            raise BadRequest(f"limit={limit}: give a number of datasets, 0 or more")
        self._path = root_path(root, "datasets")
        self.pattern, self.left, self.next = pattern, limit, cursor
        self.done = limit == 0
        self._asked = 0

    def call(self) -> Call | None:
        """The request of the next page; None once the listing (or the limit) is reached."""
        if self.done:
            return None
        self._asked = PAGE if self.left is None else min(PAGE, self.left)
        params = {"limit": str(self._asked)}
        if self.pattern:
            params["pattern"] = self.pattern
        if self.next is not None:
            params["cursor"] = self.next
        return Call("GET", self._path, _page, params)

    def took(self, page: Page) -> Page:
        """Record a page's answer; the page."""
        if len(page.lines) > self._asked:
            raise ProtocolError("the subscriber sent more datasets than asked for")
        self.next = page.next
        if self.left is not None:
            self.left -= len(page.lines)
        self.done = page.next is None or self.left == 0
        return page
