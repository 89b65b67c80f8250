"""``AsyncClient``: the async twin of ``Client`` over one pooled ``httpx.AsyncClient``.

Same methods, same requests and decoding (client/base.py), awaited. Blocking file work of a
download runs in a worker thread (anyio), so the event loop keeps serving other tasks.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx

from caterva.client.base import (
    STREAM_TIMEOUT,
    TIMEOUT,
    Call,
    Calls,
    Credentials,
    Decoders,
    RootInfo,
    base_url,
    check,
    connection_options,
    dataset_address,
    event_of,
    mapped,
)
from caterva.client.dataset import (
    AsyncDataset,
    Progress,
    Reader,
    Selections,
    advance,
    check_selections,
)
from caterva.client.transfer import (
    ROOT_PARALLEL,
    Assembler,
    Batch,
    Meter,
    dataset_target,
    groups,
    made_dirs,
    root_targets,
)
from caterva.errors import DatasetChanged, DigestMismatch, Unavailable
from caterva.protocol.metadata import DatasetInfo
from caterva.protocol.names import split_address


class AsyncClient:
    """``async with AsyncClient() as client: ds = await client.dataset("r/p"); await ds[0:5]``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        email: str | None = None,
        password: str | None = None,
        ca_file: str | os.PathLike | None = None,
        selections: Selections = "chunks",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """See ``Client``: the same credentials, TLS and ``selections`` options."""
        self.url = base_url(url)
        self.selections = check_selections(selections)
        options = connection_options(self.url, token=token, email=email, password=password,
                                     ca_file=ca_file)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=TIMEOUT, transport=transport,
                                       **options)
        self._decoders = Decoders()

    async def aclose(self) -> None:
        await self._http.aclose()
        self._decoders.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncClient {self.url}>"

    async def _send(self, call: Call) -> Any:
        if call.take is not None:
            frames = self._decoders.frames(call.take)

            async def submit(items: list) -> None:
                frames.submit(items)

            try:
                await self._stream_chunks(call, submit)
                await anyio.to_thread.run_sync(frames.finish)
            finally:
                frames.cancel()
            return None
        with mapped(self.url):
            response = await self._http.request(call.method, call.path, params=call.params or None)
        return call.decode(check(response))

    async def _run(self, reader: Reader) -> Any:
        """Make the requests a Reader yields, feeding it each answer; its result. The Reader
        resumes in a worker thread: decoding a big selection would stall the event loop."""
        call, result = advance(reader, None)  # only plans the first request: no thread
        while call is not None:
            answer = await self._send(call)
            call, result = await anyio.to_thread.run_sync(advance, reader, answer)
        return result

    # --- roots ------------------------------------------------------------------------------

    async def roots(self) -> list[RootInfo]:
        return await self._send(Calls.roots())

    async def follow(self, root: str) -> int:
        return await self._send(Calls.follow(root))

    async def unfollow(self, root: str) -> None:
        await self._send(Calls.unfollow(root))

    async def list(self, root: str) -> list[DatasetInfo]:
        return await self._send(Calls.manifest(root))

    async def info(self, address: str) -> DatasetInfo:
        return (await self._send(Calls.info(*dataset_address(address))))[0]

    async def dataset(self, address: str) -> AsyncDataset:
        root, path = dataset_address(address)
        info, cached = await self._send(Calls.info(root, path))
        return AsyncDataset(self, root, info, cached)

    async def stats(self) -> dict[str, Any]:
        return await self._send(Calls.stats())

    async def login(self, email: str, password: str) -> dict[str, Any]:
        """See ``Client.login``."""
        call = Calls.login()
        with mapped(self.url):
            response = await self._http.request(call.method, call.path, auth=None,
                                                json={"email": email, "password": password})
        answer = call.decode(check(response))
        self._http.auth = Credentials(f"{self.url}/v1/login", answer["token"], None, None)
        return answer

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
        root, path = split_address(address)
        try:
            return await self._download(root, path, dest, progress, overwrite)
        except (DatasetChanged, DigestMismatch):  # raced a change: once more, from the top
            # (what is there now was checked, or written by the first try)
            return await self._download(root, path, dest, progress, True)

    async def _download(self, root: str, path: str | None, dest, progress, overwrite: bool
                   ) -> Path:
        if path is None:
            return await self._download_root(root, dest, progress, overwrite)
        info, _ = await self._send(Calls.info(root, path))
        return await self._download_dataset(root, info, dest, progress, overwrite)

    async def _download_dataset(self, root: str, info: DatasetInfo, dest, progress,
                                overwrite: bool = True) -> Path:
        target = dataset_target(info.path, dest, overwrite)
        return await self._fetch_into(root, info, target, Meter(info.nbytes, progress))

    async def _download_root(self, root: str, dest, progress, overwrite: bool = True) -> Path:
        base, targets = root_targets(root, await self.list(root), dest, overwrite)
        with made_dirs(base, targets):
            await self._download_all(root, targets, progress)
        return base

    async def _download_all(self, root: str, targets, progress) -> None:
        meter = Meter(sum(info.nbytes for info, _ in targets), progress)
        batches, alone = groups(targets)
        sinks = [Batch(batch, meter) for batch in batches] + [
            Assembler(info, target, meter) for info, target in alone]
        # a few requests at a time (see Client._download_root)
        limit = anyio.Semaphore(ROOT_PARALLEL)

        async def one(sink: Assembler | Batch) -> None:
            async with limit:
                await self._fill(root, sink)

        try:
            async with anyio.create_task_group() as group:
                for sink in sinks:
                    group.start_soon(one, sink)
        except BaseExceptionGroup as failed:  # the first failure cancelled the rest: raise it
            raise failed.exceptions[0] from None

    async def _fetch_into(self, root: str, info: DatasetInfo, target: Path, meter: Meter) -> Path:
        return await self._fill(root, Assembler(info, target, meter))

    async def _fill(self, root: str, sink: Assembler | Batch):
        async def write(items: list) -> None:  # file I/O: in a worker thread
            await anyio.to_thread.run_sync(sink.add_all, items)

        await anyio.to_thread.run_sync(sink.open)
        try:
            for call in Calls.to_fill(root, sink):
                await self._stream_chunks(call, write)
            return await anyio.to_thread.run_sync(sink.finish)
        except BaseException:
            with anyio.CancelScope(shield=True):  # clean up even when cancelled
                await anyio.to_thread.run_sync(sink.abort)
            raise

    async def _stream_chunks(self, call: Call, add_all: Callable[[list], Awaitable]) -> None:
        """Await ``add_all`` with the frames of ``call``'s answer, those of each network read
        at once."""
        reader = call.frames()
        with mapped(self.url):
            async with self._http.stream(call.method, call.path, params=call.params,
                                         json=call.json) as response:
                if response.status_code >= 400:
                    await response.aread()
                    check(response)
                async for data in response.aiter_bytes():
                    if items := list(reader.feed(data)):
                        await add_all(items)
        reader.close()

    # --- events -----------------------------------------------------------------------------

    def watch(self, root: str | None = None) -> AsyncEventStream:
        """``async with client.watch("r") as events: async for event in events: ...``

        The stream is open once the ``async with`` is entered. Events are dicts, as for
        ``Client.watch``.
        """
        return AsyncEventStream(self, Calls.events(root))


class AsyncEventStream:
    def __init__(self, client: AsyncClient, call: Call) -> None:
        self._client = client
        self._call = call
        self._response: httpx.Response | None = None
        self._lines = None
        self._closed = False

    async def open(self) -> AsyncEventStream:
        if self._response is None:
            client = self._client
            with mapped(client.url):
                request = client._http.build_request(
                    "GET", self._call.path, params=self._call.params, timeout=STREAM_TIMEOUT
                )
                response = await client._http.send(request, stream=True)
                if response.status_code >= 400:
                    await response.aread()
                    await response.aclose()
                    check(response)
            self._response = response
            self._lines = response.aiter_lines()
        return self

    async def aclose(self) -> None:
        self._closed = True
        if self._response is not None:
            await self._response.aclose()

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
            async for line in self._lines:
                event = event_of(line)
                if event is not None:
                    return event
        raise Unavailable(f"the subscriber at {self._client.url} closed the event stream")
