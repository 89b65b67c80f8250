"""The source API (paths in caterva.protocol.rest), written once. A publisher serves it for its
root, a subscriber for the roots it follows (to its own clients, and to a LAN as a mirror);
each gives the routes a ``Source``. The routes do the HTTP: ETag and 304, gzip, ``since``,
digest headers, batch frames, and every check of a request, made before anything streams (a
status can no longer change once bytes flow).

Routes are ``async`` and so are the Source's reads: a Source that blocks (disk, blosc2) moves
that to a thread itself, one hop per group of chunks rather than one per request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from caterva.errors import BadRequest, CatervaError, ChunkOutOfRange
from caterva.protocol import rest
from caterva.protocol.metadata import DatasetInfo
from caterva.protocol.names import check_root
from caterva.service.http import (
    BATCH,
    BYTES,
    JSON_OBJECT,
    body_doc,
    header,
    json_body,
    responses,
)
from caterva.service.manifests import accepts_gzip, check_etag
from caterva.service.ranges import RANGE_HEADERS

log = logging.getLogger("caterva.http")

ETAG = {"ETag": header("The manifest's etag, quoted.")}
FILE_HEADERS = {
    "ETag": header("The file's etag, quoted (for `If-Range`)."),
    "Accept-Ranges": header("`bytes`."),
}

Group = list[tuple[int, bytes, str]]  # (index, chunk as stored, digest) in the order asked


class Served(Protocol):
    """A dataset as a Source holds it: one version, read throughout a request."""

    @property
    def path(self) -> str: ...

    @property
    def info(self) -> DatasetInfo: ...


class Source(Protocol):
    """What serves the source API. Unknown roots and datasets raise CatervaErrors."""

    def etag(self, root: str) -> str:
        """The etag of the manifest ``root`` is at now (asked before anything is encoded)."""

    async def manifest(
        self, root: str, since: str | None, gzip: bool
    ) -> tuple[str, bytes | Iterator[bytes]]:
        """(etag, JSON) of the manifest of ``root`` with its seal; with ``since``, of what
        changed since that version (a ManifestDelta) when the source still knows it, else of
        the full manifest. Gzipped when ``gzip``. The JSON whole, or as pieces made while it
        is sent (read in a worker thread)."""

    def dataset(self, root: str, path: str) -> Served:
        """The current version of a dataset."""

    async def info(self, dataset: Any) -> bytes:
        """The JSON of the dataset's info (a subscriber adds how much of it is cached)."""

    async def chunk(self, dataset: Any, index: int) -> bytes:
        """Chunk ``index`` (in range) exactly as stored."""

    async def chunks(self, wanted: list[tuple[Any, list[int]]]) -> AsyncIterator[Group]:
        """The chunks of ``wanted`` in groups, in order. What fails before the first group
        fails the call (a status); a later CatervaError ends the stream with an error frame,
        or the source ends it short (the reader asks again for what is missing)."""

    async def batch(self, wanted: list[tuple[Any, list[int]]]) -> Response | None:
        """The whole answer to a batch when the source can send it better than as ``chunks``
        (from file ranges, caterva.service.spansend), else None."""

    async def file(self, dataset: Any) -> Response:
        """The whole file, streamed, Range-aware (caterva.service.ranges)."""


class ChunkList(BaseModel):
    path: str
    i: str  # chunk indices, e.g. `0-7,12`


class ChunkLists(BaseModel):
    """The body of ``POST /v1/roots/{root}/chunks`` (caterva.protocol.rest), on any source."""

    datasets: list[ChunkList]


def batch_indices(dataset: Served, text: str) -> list[int]:
    """The chunk indices a batch asks of ``dataset``, every one in range."""
    indices = rest.parse_indices(text)
    beyond = [n for n in indices if n >= dataset.info.nchunks]
    if beyond:
        raise _out_of_range(dataset, beyond[0])
    return indices


def batch_of_many(body: ChunkLists, source: Source, root: str) -> list[tuple[Any, list[int]]]:
    """(dataset, indices) of a multi-dataset batch, every one checked up front."""
    wanted, total = [], 0
    for item in body.datasets:
        dataset = source.dataset(root, item.path)
        wanted.append((dataset, batch_indices(dataset, item.i)))
        total += len(wanted[-1][1])
        if total > rest.MAX_BATCH:
            raise BadRequest(f"too many chunks in one request (at most {rest.MAX_BATCH})")
    if not wanted:
        raise BadRequest("no datasets listed")
    return wanted


def _out_of_range(dataset: Served, index: int) -> ChunkOutOfRange:
    nchunks = dataset.info.nchunks
    return ChunkOutOfRange(
        f"chunk {index} out of range: {dataset.path!r} has {nchunks} chunks",
        index=index,
        nchunks=nchunks,
    )


async def frames(groups: AsyncIterator[Group]) -> AsyncIterator[bytes]:
    """A batch stream's frames; a caterva error once they flow (a source gone offline midway)
    ends it with an error frame the client raises, and one log line: not a cut connection
    and two tracebacks ("response already started")."""
    try:
        async for group in groups:
            for piece in rest.frame_pieces(group):
                yield piece
    except CatervaError as exc:
        log.warning("a chunk stream ended early: %s", exc)
        yield rest.error_frame(exc)


async def batch(source: Source, wanted: list[tuple[Any, list[int]]]) -> Response:
    response = await source.batch(wanted)
    if response is None:
        groups = await source.chunks(wanted)
        response = StreamingResponse(frames(groups), media_type=rest.BATCH_TYPE)
    return response


async def _source(request: Request) -> Source:
    return request.state.source


async def _root(root: Annotated[str, PathParam(description="Root name.")]) -> str:
    return check_root(root)


SourceDep = Annotated[Source, Depends(_source)]
Root = Annotated[str, Depends(_root)]
DatasetPath = Annotated[str, PathParam(description="Dataset path inside the root, with slashes.")]
ChunkListsBody = Annotated[ChunkLists, Depends(json_body(ChunkLists))]
Since = Annotated[str | None, Query(description="The manifest etag the client holds.")]


def router(root_errors: Sequence[int] = (), read_errors: Sequence[int] = ()) -> APIRouter:
    """The source API's routes. ``root_errors``: the statuses a source answers for a root it
    has, beside 404 (a subscriber's 409 for one it does not follow); ``read_errors``: those
    a read of chunks can answer (503 when a file is rewritten, 502 for a bad upstream)."""
    api = APIRouter(prefix=rest.API)
    on_root = (400, 404, *root_errors)
    on_read = (*on_root, *read_errors)

    @api.get(
        "/roots/{root}/manifest",
        summary="Root manifest",
        description="Every dataset of the root with its etag, layout and chunk digests. Send "
        "`If-None-Match` with the last ETag to get 304 when nothing changed. With `since=ETAG`, "
        "only what changed since that manifest (a ManifestDelta: changed datasets, removed "
        "paths, the current seal) while the source still knows it, else the full manifest. "
        "Gzipped when `Accept-Encoding` allows.",
        response_class=Response,
        responses={
            200: {
                "content": JSON_OBJECT,
                "description": "The manifest or the delta; the etag of "
                "the manifest it gives is in `ETag`.",
                "headers": ETAG,
            },
            304: {"description": "Unchanged since the ETag in `If-None-Match`.", "headers": ETAG},
            **responses(*on_root),
        },
    )
    async def manifest(
        root: Root,
        source: SourceDep,
        if_none_match: Annotated[str | None, Header()] = None,
        accept_encoding: Annotated[str | None, Header()] = None,
        since: Since = None,
    ) -> Response:
        since = check_etag(since) if since is not None else None
        etag = source.etag(root)
        headers = {"ETag": f'"{etag}"', "Vary": "Accept-Encoding"}
        if if_none_match and rest.etag_matches(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        gzip = accepts_gzip(accept_encoding)
        etag, body = await source.manifest(root, since, gzip)
        headers["ETag"] = f'"{etag}"'
        if gzip:
            headers["Content-Encoding"] = "gzip"
        if not isinstance(body, bytes):
            return StreamingResponse(body, media_type="application/json", headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    @api.get(
        "/roots/{root}/info/{path:path}",
        summary="Dataset info",
        description="Shape, dtype, chunks, blocks, cparams, vlmeta, nchunks and chunk digests; "
        "from a subscriber, also how much of it is cached (`cached`: chunks and bytes).",
        response_class=Response,
        responses={
            200: {
                "content": JSON_OBJECT,
                "description": "The DatasetInfo.",
                "headers": {"ETag": header("The dataset's etag, quoted.")},
            },
            **responses(*on_root),
        },
    )
    async def info(root: Root, path: DatasetPath, source: SourceDep) -> Response:
        dataset = source.dataset(root, path)
        return Response(
            await source.info(dataset),
            media_type="application/json",
            headers={"ETag": f'"{dataset.info.etag}"'},
        )

    @api.get(
        "/roots/{root}/chunk/{index}/{path:path}",
        summary="One raw chunk",
        description="Chunk `index` exactly as stored (compressed); the BLAKE3-128 digest of "
        f"these bytes is in `{rest.DIGEST_HEADER}`.",
        response_class=Response,
        responses={
            200: {
                "content": BYTES,
                "description": "The compressed chunk.",
                "headers": {rest.DIGEST_HEADER: header("The chunk's digest.")},
            },
            **responses(*on_read),
        },
    )
    async def chunk(
        root: Root,
        index: Annotated[int, PathParam(description="Chunk index, from 0.")],
        path: DatasetPath,
        source: SourceDep,
    ) -> Response:
        dataset = source.dataset(root, path)
        if not 0 <= index < dataset.info.nchunks:
            raise _out_of_range(dataset, index)
        return Response(
            await source.chunk(dataset, index),
            media_type="application/octet-stream",
            headers={rest.DIGEST_HEADER: dataset.info.digests[index]},
        )

    @api.get(
        "/roots/{root}/chunks/{path:path}",
        summary="Many raw chunks, streamed",
        description="The chunks listed in `i` (e.g. `0-7,12`), in that order, each as a 28-byte "
        "header `<u32 index><u64 length><16-byte digest>` followed by the chunk as stored.",
        response_class=StreamingResponse,
        responses={
            200: {"content": BATCH, "description": "The batch frames."},
            **responses(*on_read),
        },
    )
    async def chunks(
        root: Root,
        path: DatasetPath,
        i: Annotated[str, Query(description="Chunk indices and ranges, e.g. `0-7,12`.")],
        source: SourceDep,
    ) -> Response:
        dataset = source.dataset(root, path)
        return await batch(source, [(dataset, batch_indices(dataset, i))])

    @api.post(
        "/roots/{root}/chunks",
        summary="Chunks of many datasets, one stream",
        description="The chunks of each listed dataset, datasets in the order listed and chunks "
        "in the order of their `i`, as the frames of the GET batch: one request for many small "
        f"datasets instead of one each. At most {rest.MAX_BATCH} chunks in all.",
        response_class=StreamingResponse,
        responses={
            200: {"content": BATCH, "description": "The batch frames."},
            **responses(*on_read, 413),
        },
        openapi_extra=body_doc(ChunkLists),
    )
    async def many_chunks(root: Root, body: ChunkListsBody, source: SourceDep) -> Response:
        return await batch(source, batch_of_many(body, source, root))

    @api.get(
        "/roots/{root}/file/{path:path}",
        summary="The whole stored file",
        description="The file as stored at the source (a Blosc2 file; the original bytes for "
        "plain files), streamed. Supports `Range` (206, 416) and `If-Range`.",
        response_class=Response,
        responses={
            200: {"content": BYTES, "description": "The whole file.", "headers": FILE_HEADERS},
            206: {
                "content": {**BYTES, "multipart/byteranges": {}},
                "description": "The requested byte range(s).",
                "headers": {
                    **FILE_HEADERS,
                    "Content-Range": header("The range sent, when one.", False),
                },
            },
            **responses(*on_read, 416),
        },
        openapi_extra=RANGE_HEADERS,
    )
    async def file(root: Root, path: DatasetPath, source: SourceDep) -> Response:
        return await source.file(source.dataset(root, path))

    return api
