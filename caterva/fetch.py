"""Talking to sources (publishers and mirrors): one pooled httpx client, errors mapped once.

Any transport failure becomes SourceOffline; a caterva JSON error becomes the same caterva
error class it was raised as at the source; anything else is a ProtocolError. Callers above
this module never see httpx exceptions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpcore
import httpx

from caterva.errors import CatervaError, ProtocolError, SourceOffline, SourceRefused, from_payload
from caterva.protocol import rest
from caterva.protocol.metadata import DatasetInfo, Manifest

TIMEOUT = httpx.Timeout(30.0, connect=3.0)
LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=16)
READ_BYTES = 1 << 20


def new_client(**kwargs) -> httpx.AsyncClient:
    # httpcore reads a response 64 KiB at a time, with ~100 us of Python around each read;
    # chunk batches are megabytes, so read bigger pieces. A class setting (httpcore has no
    # option for it): this process's only HTTP client talks to sources.
    httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = READ_BYTES
    return httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS, **kwargs)


async def raise_for_error(response: httpx.Response) -> None:
    """Turn a non-2xx/304 response into the caterva error it carries."""
    if response.status_code < 400:
        return
    await response.aread()
    try:
        payload = response.json()
    except ValueError:
        payload = None
    error = from_payload(payload, response.status_code)
    if isinstance(error, PermissionError):  # our credentials, not the reader's: say whose
        raise SourceRefused(
            f"source {response.url.scheme}://{response.url.netloc.decode()} refused this "
            f"subscriber ({error.message}): set its --source-token (env CATERVA_SOURCE_TOKEN)"
        ) from error
    raise error


@asynccontextmanager
async def _mapped(url: str):
    try:
        yield
    except httpx.TransportError as exc:
        raise SourceOffline(f"source {url} is unreachable ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise ProtocolError(f"bad answer from source {url}: {exc}") from exc


class Source:
    """The source API of one base URL, over a shared client."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url.rstrip("/")

    async def _get_json(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async with _mapped(self.url):
            response = await self.client.get(self.url + path, headers=headers)
        await raise_for_error(response)
        return response

    async def manifest(self, root: str, etag: str | None = None) -> Manifest | None:
        """The root's manifest; None when it still matches ``etag`` (HTTP 304)."""
        headers = {"If-None-Match": f'"{etag}"'} if etag else None
        response = await self._get_json(rest.manifest(root), headers)
        if response.status_code == 304:
            return None
        return _decode(Manifest, response)

    async def info(self, root: str, path: str) -> DatasetInfo:
        return _decode(DatasetInfo, await self._get_json(rest.info(root, path)))

    async def chunks(
        self, root: str, wanted: list[tuple[str, list[int]]]
    ) -> AsyncIterator[tuple[int, int, str, bytes]]:
        """Stream (n, index, digest, bytes) for the chunks of ``wanted`` (n: which dataset), in
        the order asked: from the GET batch for one dataset, the POST batch for several."""
        if len(wanted) == 1:
            (path, indices), = wanted
            method, url = "GET", rest.chunks(root, path)
            args = {"params": {"i": rest.format_indices(indices)}}
        else:
            method, url = "POST", rest.chunks_of_many(root)
            args = {"json": {"datasets": [{"path": p, "i": rest.format_indices(ix)}
                                          for p, ix in wanted]}}
        # frames come in the order asked: each dataset's chunks, ascending (format_indices)
        order = ((n, i) for n, (_, indices) in enumerate(wanted) for i in sorted(set(indices)))
        reader = rest.BatchReader()
        async with _mapped(self.url):
            async with self.client.stream(method, self.url + url, **args) as response:
                await raise_for_error(response)
                async for data in response.aiter_bytes():
                    for i, digest, chunk in reader.feed(data):
                        n, expected = next(order, (None, None))
                        if i != expected:
                            raise ProtocolError(f"source {self.url} sent chunk {i} out of order")
                        yield n, i, digest, chunk
        reader.close()


def _decode(model, response: httpx.Response):
    try:
        return model.from_dict(response.json())
    except ValueError as exc:
        if isinstance(exc, CatervaError):
            raise
        raise ProtocolError(f"source sent invalid JSON for {model.__name__}") from exc
