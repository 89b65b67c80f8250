"""Zero-copy sending of file bytes: the ASGI ``http.response.zerocopysend`` extension, added to
uvicorn's httptools protocol (uvicorn has no extension of its own for it).

A response that finds ``ZEROCOPY`` in ``scope["extensions"]`` may send, after its start,
``{"type": ZEROCOPY, "file": <open binary file>, "offset": int, "count": int, "more_body":
bool}``: the kernel copies those bytes of the file to the socket (``loop.sendfile``; over TLS
asyncio reads and writes them instead). Only responses with a Content-Length may: the bytes
sent count against it as body messages do. Every other message goes to uvicorn unchanged.

This is the one place that reaches into uvicorn: where its httptools protocol starts a
request's task (``_start_asgi_task``) and that request's cycle (``send``, ``transport``,
``expected_content_length``, as of uvicorn 0.55). Without httptools, or with a uvicorn that
starts tasks otherwise, the extension is not offered and responses send bytes as usual.
"""

from __future__ import annotations

import asyncio
from typing import Any

ZEROCOPY = "http.response.zerocopysend"


def protocol() -> Any:
    """The HTTP protocol class for uvicorn.Config(http=...): httptools' with the extension,
    else uvicorn's own choice."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools
        return "auto"

    class ZeroCopyProtocol(HttpToolsProtocol):
        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            cycle.scope.setdefault("extensions", {})[ZEROCOPY] = {}
            plain = cycle.send

            async def send(message: Any) -> None:
                if message["type"] != ZEROCOPY:
                    return await plain(message)
                await _sendfile(cycle, message)
                if not message.get("more_body", False):
                    await plain({"type": "http.response.body", "body": b"", "more_body": False})

            cycle.send = send
            super()._start_asgi_task(cycle, app)

    return ZeroCopyProtocol


async def _sendfile(cycle: Any, message: Any) -> None:
    if cycle.disconnected:
        return
    if not cycle.response_started or cycle.response_complete or cycle.chunked_encoding:
        raise RuntimeError(f"{ZEROCOPY} needs a started response with a Content-Length")
    count = message["count"]
    if count > cycle.expected_content_length:
        raise RuntimeError("Response content longer than Content-Length")
    if cycle.flow.write_paused:
        await cycle.flow.drain()
    loop = asyncio.get_running_loop()
    sent = await loop.sendfile(cycle.transport, message["file"], message.get("offset", 0), count)
    cycle.expected_content_length -= sent
