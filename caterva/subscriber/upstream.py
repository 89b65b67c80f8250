"""Talking to sources (publishers and mirrors): one pooled client, errors mapped once.

JSON answers come through httpx; chunk batches, nearly all the bytes, through bulk.py (a lean
HTTP/1.1 client), over connections of its own but with the same TLS context, headers, source
tokens, hooks (metrics, a mirror's X-Caterva-Via) and timeouts: requests are built by httpx.
Any transport failure becomes SourceOffline; a caterva JSON error becomes the same caterva
error class it was raised as at the source; anything else is a ProtocolError. Callers above
this module never see httpx exceptions.

What a source sends is bounded before it is kept: JSON (a manifest, an info, an error) by
``max_source_json``, batch frames by their datasets' chunk size (rest.BatchReader), a silent
source by ``source_timeout`` (no byte for that long: SourceOffline). Manifests are asked for
gzipped (a tenth of the bytes at scale) and as a delta since the etag held; a gzipped body is
inflated a piece at a time and never past the bound (a small body may inflate a thousandfold).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpcore
import httpx

from caterva import config
from caterva.errors import CatervaError, ProtocolError, SourceOffline, SourceRefused, from_response
from caterva.protocol import listing, rest
from caterva.protocol.listing import Listing
from caterva.protocol.metadata import DatasetInfo
from caterva.subscriber import bulk

LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=16)
READ_BYTES = 1 << 20


class SourceClient(httpx.AsyncClient):
    """The pooled client to sources, and the most bytes of JSON it reads from one answer."""

    def __init__(self, *, max_json: int, verify: ssl.SSLContext, **kwargs) -> None:
        super().__init__(verify=verify, **kwargs)
        self.max_json = max_json
        self.bulk = bulk.Pool(
            verify,
            connect_timeout=self.timeout.connect,
            read_timeout=self.timeout.read,
            pool_timeout=self.timeout.pool,
            max_connections=LIMITS.max_connections,
            max_idle=LIMITS.max_keepalive_connections,
        )

    @asynccontextmanager
    async def stream_bulk(self, method: str, url: str, **kwargs):
        """(head, body) of a request sent through bulk.py: ``head`` an httpx.Response without
        its body (raise_for_error reads an error's), ``body`` the bulk body's pieces."""
        request = self.build_request(method, url, **kwargs)
        if self.auth is not None:  # one step: SourceTokens adds a header
            flow = self.auth.async_auth_flow(request)
            request = await anext(flow)
            await flow.aclose()
        for hook in self.event_hooks["request"]:
            await hook(request)
        u = request.url
        if u.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"no {u.scheme!r} sources", request=request)
        line = b"%s %s HTTP/1.1\r\n" % (method.encode(), u.raw_path)
        head = line + b"".join(b"%s: %s\r\n" % kv for kv in request.headers.raw) + b"\r\n"
        key = (u.scheme, u.host, u.port or (443 if u.scheme == "https" else 80))
        async with self.bulk.request(key, head, request.content) as answer:
            response = httpx.Response(
                answer.status, headers=answer.headers, stream=_Body(answer), request=request
            )
            for hook in self.event_hooks["response"]:
                await hook(response)
            yield response, answer.body()

    async def aclose(self) -> None:
        await self.bulk.aclose()
        await super().aclose()


class _Body(httpx.AsyncByteStream):
    """A bulk body as httpx reads one: for the small bodies of errors."""

    def __init__(self, answer: bulk.Response) -> None:
        self.answer = answer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self.answer.body():
            yield bytes(piece)


def read_in_big_pieces() -> None:
    """httpcore reads a response 64 KiB at a time, with ~100 us of Python around each read;
    a manifest can be tens of megabytes, so read 1 MiB pieces (a 128 MiB body on loopback:
    ~550 -> ~750 MiB/s; chunk batches go through bulk.py). A class setting, as httpcore has no
    option for it: made by the subscriber process at start (caterva.subscriber.run), whose only
    HTTP client talks to sources."""
    httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = READ_BYTES


def new_client(
    *, max_json: int | None = None, read_timeout: float | None = None, **kwargs
) -> SourceClient:
    """The client to sources; limits not given are the settings ``max_source_json`` and
    ``source_timeout`` (caterva.config)."""
    read = config.parse_duration(config.setting("source_timeout", read_timeout))
    verify = kwargs.pop("verify", True)
    return SourceClient(
        verify=verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify),
        max_json=config.parse_size(config.setting("max_source_json", max_json)),
        timeout=httpx.Timeout(30.0, connect=3.0, read=read),
        limits=LIMITS,
        headers={"Accept-Encoding": "identity"},
        **kwargs,
    )  # gzip only where asked for


def _origin(response: httpx.Response) -> str:
    return f"{response.url.scheme}://{response.url.netloc.decode()}"


def _check_plain(response: httpx.Response) -> None:
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        raise ProtocolError(f"source {_origin(response)} sent an encoded body (not asked for)")


async def _read(response: httpx.Response, most: int) -> bytes:
    """The body of ``response`` (inflated if gzipped), refused as soon as it is known to
    exceed ``most`` bytes."""
    encoding = response.headers.get("content-encoding", "identity").lower()
    if encoding not in ("identity", "gzip"):
        raise ProtocolError(f"source {_origin(response)} sent a {encoding} body (not asked for)")
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    declared = response.headers.get("content-length", "")
    too_big = ProtocolError(
        f"source {_origin(response)} sent more than {most:,} bytes of JSON "
        "(the setting max_source_json)"
    )
    if declared.isdigit() and int(declared) > most:
        raise too_big
    body = bytearray()
    async for piece in response.aiter_raw() if inflate else response.aiter_bytes():
        if inflate is not None:
            try:
                piece = inflate.decompress(piece, most + 1 - len(body))
            except zlib.error as exc:
                raise ProtocolError(f"source {_origin(response)} sent bad gzip: {exc}") from exc
            if inflate.unconsumed_tail:
                raise too_big
        body += piece
        if len(body) > most:
            raise too_big
    if inflate is not None and not inflate.eof:
        raise ProtocolError(f"source {_origin(response)} sent a truncated gzip body")
    return bytes(body)


async def raise_for_error(response: httpx.Response, most: int) -> None:
    """Turn a non-2xx/304 response into the caterva error it carries (its body read up to
    ``most`` bytes)."""
    if response.status_code < 400:
        return
    error = from_response(response.status_code, await _read(response, most))
    if isinstance(error, PermissionError):  # our credentials, not the reader's: say whose
        raise SourceRefused(
            f"source {_origin(response)} refused this "
            f"subscriber ({error.message}): give it with --source-token URL=TOKEN "
            "(env CATERVA_SOURCE_TOKEN)"
        ) from error
    raise error


@asynccontextmanager
async def _mapped(url: str):
    """httpx's and bulk's errors as caterva's, for every request to a source (the one place)."""
    try:
        yield
    except CatervaError:  # some are OSErrors too (PermissionError, TimeoutError)
        raise
    except (httpx.TransportError, OSError) as exc:  # OSError: bulk's (TimeoutError among them)
        raise SourceOffline(f"source {url} is unreachable ({type(exc).__name__})") from exc
    except bulk.BadHTTP as exc:
        raise ProtocolError(f"bad answer from source {url}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise ProtocolError(f"bad answer from source {url}: {exc}") from exc
    except httpx.InvalidURL as exc:  # not an HTTPError; the URL came in an MQTT announcement
        raise ProtocolError(f"source URL {url!r} is invalid: {exc}") from exc


class Source:
    """The source API of one base URL, over a shared client."""

    def __init__(self, client: SourceClient, url: str) -> None:
        self.client = client
        self.url = url.rstrip("/")

    async def _get_json(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """(status, body) of a JSON answer, every byte of it bounded."""
        most = self.client.max_json
        async with (
            _mapped(self.url),
            self.client.stream("GET", self.url + path, headers=headers) as response,
        ):
            await raise_for_error(response, most)
            return response.status_code, await _read(response, most)

    async def manifest(self, root: str, etag: str | None = None) -> Listing | None:
        """The root's manifest, or what changed since ``etag`` when the source can say (a
        delta); None when it still is ``etag`` (HTTP 304). Parsed off the event loop (a
        manifest of 100,000 datasets is 45 MB of JSON) as a follower keeps it
        (caterva.protocol.listing), each dataset's etag checked against its content."""
        body = await self._manifest_body(root, etag)
        return None if body is None else await asyncio.to_thread(listing.parse, body)

    async def _manifest_body(self, root: str, etag: str | None) -> bytes | None:
        headers = {"Accept-Encoding": "gzip"}
        path = rest.manifest(root)
        if etag:
            headers["If-None-Match"] = f'"{etag}"'
            path += f"?since={etag}"
        status, body = await self._get_json(path, headers)
        return None if status == 304 else body

    async def health(self) -> dict:
        """The source's health answer: a JSON object (probe.py reads who it says it is)."""
        body = (await self._get_json(rest.HEALTH))[1]
        try:
            obj = json.loads(body)
        except ValueError as exc:
            raise ProtocolError(f"source {self.url} sent invalid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise ProtocolError(f"source {self.url} sent a health answer that is no object")
        return obj

    async def info(self, root: str, path: str) -> DatasetInfo:
        return _decode(DatasetInfo, (await self._get_json(rest.info(root, path)))[1])

    async def chunks(
        self, root: str, wanted: list[tuple[DatasetInfo, list[int]]]
    ) -> AsyncIterator[tuple[int, int, str, bytes]]:
        """Stream (n, index, digest, bytes) for the chunks of ``wanted`` (n: which dataset), in
        the order asked: from the GET batch for one dataset, the POST batch for several."""
        if len(wanted) == 1:
            ((info, indices),) = wanted
            method, url = "GET", rest.chunks(root, info.path)
            args = {"params": {"i": rest.format_indices(indices)}}
        else:
            method, url = "POST", rest.chunks_of_many(root)
            args = {
                "json": {
                    "datasets": [
                        {"path": info.path, "i": rest.format_indices(ix)} for info, ix in wanted
                    ]
                }
            }
        # the reader checks each frame's index and length; n (which dataset) follows that order
        reader = rest.BatchReader(rest.expected_frames(wanted))
        order = (n for n, (_, indices) in enumerate(wanted) for _ in set(indices))
        async with (
            _mapped(self.url),
            self.client.stream_bulk(method, self.url + url, **args) as (response, body),
        ):
            await raise_for_error(response, self.client.max_json)
            if response.status_code != 200:  # a redirect is not followed
                raise ProtocolError(
                    f"source {self.url} answered a batch with HTTP {response.status_code}"
                )
            _check_plain(response)
            async for data in body:
                for i, digest, chunk in reader.feed(data):
                    yield next(order), i, digest, chunk
        reader.close()


def _decode(model, body: bytes):
    """``body`` as ``model`` (a Model class)."""
    try:
        return model.from_dict(json.loads(body))
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, CatervaError):
            raise
        raise ProtocolError(f"source sent invalid JSON: {exc}") from exc
