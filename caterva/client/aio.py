"""``AsyncClient``: the async driver over one pooled ``httpx.AsyncClient`` (client/viahttpx.py).

Same methods, requests, decoding and programs as ``Client`` (client/sync.py), awaited. A
program resumes in a worker thread (anyio), so its blocking work (decoding a selection,
writing a file) never stalls the event loop.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx

from caterva.client import viahttpx
from caterva.client.base import ClientBase, EventsBase
from caterva.client.calls import (
    POUR_BYTES,
    Call,
    Calls,
    Frame,
    RootInfo,
    dataset_address,
    event_of,
    stream_ended,
)
from caterva.client.dataset import AsyncDataset, Progress
from caterva.client.listing import Page, Pager
from caterva.client.program import Parallel, Program, Step, advance
from caterva.client.transport import check, cut_short, mapped
from caterva.protocol.metadata import DatasetInfo


class AsyncClient(ClientBase):
    """``async with AsyncClient() as client: ds = await client.dataset("r/p"); await ds[0:5]``."""

    def _connect(self, transport: httpx.AsyncBaseTransport | None) -> None:
        self._http = viahttpx.make(httpx.AsyncClient, self.url, self._options, transport)

    async def aclose(self) -> None:
        await self._http.aclose()
        self._decoders.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the driver (see Client) ------------------------------------------------------------

    async def _run(self, program: Program) -> Any:
        """As ``Client._run``, the program resuming in a worker thread; after a failure
        shielded, so its clean-up finishes even when this task is cancelled."""
        answer, error = None, None
        while True:
            with anyio.CancelScope(shield=error is not None):
                step, result = await anyio.to_thread.run_sync(advance, program, answer, error)
            if step is None:
                return result
            try:
                answer, error = await self._take(step), None
            except BaseException as exc:  # the program cleans up, or handles it
                answer, error = None, exc

    async def _take(self, step: Step) -> Any:
        if isinstance(step, Parallel):
            return await self._parallel(step)
        if step.local and not self.local:
            return None
        if step.take is not None:
            frames = self._decoders.frames(step.take)
            try:
                await self._feed(step, frames.submit, blocking=False)
            except BaseException:
                frames.cancel()
                raise
            return frames
        if step.write is not None:
            return await self._feed(step, step.write, blocking=True)
        if step.pour is not None:
            return await self._pour(step)
        with mapped(self.url):
            response = await self._http.request(step.method, step.path, **viahttpx.args(step))
        return step.decode(check(response))

    @asynccontextmanager
    async def _response(self, call: Call) -> AsyncIterator[httpx.Response]:
        with mapped(self.url):
            async with self._http.stream(call.method, call.path, **viahttpx.args(call)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    check(response)
                yield response

    async def _feed(self, call: Call, feed: Callable[[list[Frame]], Any], blocking: bool) -> None:
        """``feed`` the frames of each network read; a ``blocking`` one in a worker thread."""
        reader = call.frames()
        async with self._response(call) as response:
            async for data in response.aiter_bytes():
                if not (items := list(reader.feed(data))):
                    continue
                if blocking:
                    await anyio.to_thread.run_sync(feed, items)
                else:
                    feed(items)
        reader.close()

    async def _pour(self, call: Call) -> None:
        """As ``Client._pour``, each hand-over in a worker thread."""
        async with self._response(call) as response:
            if call.head is not None:
                call.head(response.headers)
            pieces, size = [], 0
            async for data in response.aiter_bytes():
                pieces.append(data)
                size += len(data)
                if size >= POUR_BYTES:
                    await anyio.to_thread.run_sync(call.pour, pieces)
                    pieces, size = [], 0
            if pieces:
                await anyio.to_thread.run_sync(call.pour, pieces)

    async def _parallel(self, step: Parallel) -> None:
        limit = anyio.Semaphore(step.limit)

        async def one(program: Program) -> None:
            async with limit:
                await self._run(program)

        try:
            async with anyio.create_task_group() as group:
                for program in step.programs:
                    group.start_soon(one, program)
        except BaseExceptionGroup as failed:  # the first failure cancelled the rest: raise it
            step.stop()
            raise failed.exceptions[0] from None

    # --- roots ------------------------------------------------------------------------------

    async def roots(self) -> list[RootInfo]:
        return await self._take(Calls.roots())

    async def follow(self, root: str, pin: bool | None = None) -> int:
        return await self._take(Calls.follow(root, pin))

    async def unfollow(self, root: str) -> None:
        await self._take(Calls.unfollow(root))

    async def list(self, root: str) -> list[DatasetInfo]:
        return await self._take(Calls.manifest(root))

    async def datasets(
        self, root: str, pattern: str = "", *, limit: int | None = None, cursor: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """See ``Client.datasets``: ``async for entry in client.datasets("r", "a/*"): ...``"""
        async for page in self.pages(root, pattern, limit=limit, cursor=cursor):
            for entry in page.datasets:
                yield entry

    async def pages(
        self, root: str, pattern: str = "", *, limit: int | None = None, cursor: str | None = None
    ) -> AsyncIterator[Page]:
        """See ``Client.pages``."""
        pager = Pager(root, pattern, limit, cursor)
        while (call := pager.call()) is not None:
            yield pager.took(await self._take(call))

    async def info(self, address: str) -> DatasetInfo:
        return (await self._take(Calls.info(*dataset_address(address))))[0]

    async def dataset(self, address: str) -> AsyncDataset:
        root, path = dataset_address(address)
        info, cached = await self._take(Calls.info(root, path))
        return AsyncDataset(self, root, info, cached)

    async def stats(self) -> dict[str, Any]:
        return await self._take(Calls.stats())

    async def status(self) -> dict[str, Any]:
        """See ``Client.status``."""
        return await self._take(Calls.status())

    async def login(self, email: str, password: str) -> dict[str, Any]:
        """See ``Client.login``."""
        return self._signed_in(await self._take(Calls.login(email, password)))

    # --- downloads --------------------------------------------------------------------------

    async def download(
        self,
        address: str,
        dest: str | os.PathLike | None = None,
        *,
        progress: Progress | None = None,
        overwrite: bool = True,
    ) -> Path:
        """See ``Client.download``."""
        from caterva.client import download  # not at import: as Client

        return (await self._run(download.download(address, dest, progress, overwrite)))[0]

    # --- events -----------------------------------------------------------------------------

    def watch(self, root: str | None = None) -> AsyncEventStream:
        """``async with client.watch("r") as events: async for event in events: ...``

        The stream is open once the ``async with`` is entered. Events are dicts, as for
        ``Client.watch``.
        """
        return AsyncEventStream(self, Calls.events(root))


class AsyncEventStream(EventsBase):
    _stack_class = AsyncExitStack

    async def open(self) -> AsyncEventStream:
        if self._lines is None:
            response = await self._open.enter_async_context(self._client._response(self._call))
            self._lines = response.aiter_lines()
        return self

    async def aclose(self) -> None:
        self._closed = True
        await self._open.aclose()

    async def __aenter__(self) -> AsyncEventStream:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._closed:
            raise StopAsyncIteration
        await self.open()
        with mapped(self._client.url):
            try:
                async for line in self._lines:
                    if (event := event_of(line)) is not None:
                        return event
            except Exception as exc:  # closed without its last chunk as it stopped
                if not cut_short(exc):
                    raise
        raise stream_ended(self._client.url)
