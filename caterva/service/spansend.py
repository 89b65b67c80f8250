"""A batch answer sent from file ranges (the publisher's Blosc2 files, caterva.publisher.spans;
the subscriber's cached chunk files, caterva.subscriber.source): each frame's header as a
body message, then its chunk with a zero-copy send when the server offers one
(caterva.service.zerocopy), else read in a worker thread. The length is known up front
(Content-Length): a file written in place midway ends the answer short, and the client sees
an incomplete body rather than a whole answer with wrong bytes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from caterva.protocol import rest
from caterva.service.zerocopy import ZEROCOPY

log = logging.getLogger("caterva.http")


@dataclass(slots=True)
class Part:
    """A frame of the batch: its header, then ``size`` bytes of ``file`` from ``offset``;
    ``entry``: the dataset it is of (anything with a ``path``)."""

    head: bytes
    file: BinaryIO
    offset: int
    size: int
    entry: Any


@dataclass(slots=True)
class Plan:
    parts: list[Part]
    files: list[BinaryIO]

    @property
    def length(self) -> int:
        return sum(len(p.head) + p.size for p in self.parts)

    def close(self) -> None:
        for file in self.files:
            file.close()
        self.files = []


class SpanResponse(Response):
    """``plan``'s frames; ``changed(part)``: whether a part's file is no longer the version
    to send (checked after it is sent)."""

    def __init__(self, plan: Plan, changed: Callable[[Part], bool]) -> None:
        super().__init__(media_type=rest.BATCH_TYPE)
        self.headers["Content-Length"] = str(plan.length)
        self.plan, self.changed = plan, changed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        zerocopy = ZEROCOPY in scope.get("extensions", {})
        try:
            start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            await send(start)
            for part in self.plan.parts:
                await send({"type": "http.response.body", "body": part.head, "more_body": True})
                if zerocopy:
                    where = {"file": part.file, "offset": part.offset, "count": part.size}
                    await send({"type": ZEROCOPY, **where, "more_body": True})
                else:
                    data = await anyio.to_thread.run_sync(
                        os.pread, part.file.fileno(), part.size, part.offset
                    )
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                if self.changed(part):  # sent, but maybe not as described: end short
                    log.info("batch cut: %r changed while it was sent", part.entry.path)
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.plan.close()
