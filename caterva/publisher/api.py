"""The source API routes (paths in caterva.protocol.rest), served from the catalog.

Routes are plain ``def``: FastAPI runs them in its thread pool, so blosc2 and disk reads never
block the event loop. Dependencies are ``async def``: they do no I/O, and a plain one would cost
a thread hop each. A batch streams its chunks as the client consumes them, reading a group of
about GROUP_BYTES per thread hop (one hop per chunk costs more than reading a small chunk).
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse

from caterva.errors import CatervaError, Unavailable, UnknownDataset, UnknownRoot
from caterva.protocol import rest
from caterva.protocol.names import check_root
from caterva.publisher import versions
from caterva.publisher.catalog import Catalog, Entry
from caterva.publisher.stats import Stats
from caterva.publisher.store import StatKey
from caterva.service.http import (
    BATCH,
    BYTES,
    JSON_OBJECT,
    ChunkLists,
    ChunkListsBody,
    batch_indices,
    batch_of_many,
    body_doc,
    header,
    responses,
)
from caterva.service.ranges import RANGE_HEADERS, RangeFileResponse

log = logging.getLogger("caterva.publisher")

GROUP_BYTES = 4 << 20  # compressed bytes of a batch read in one thread hop, and sent at once

router = APIRouter(prefix=rest.API)

ETAG = {"ETag": header("The manifest's etag, quoted.")}


async def _catalog(request: Request) -> Catalog:
    return request.state.catalog


async def _stats(request: Request) -> Stats:
    return request.state.stats


async def _root(request: Request, root: Annotated[str, PathParam(description="Root name.")]) -> str:
    check_root(root)
    if root != request.state.settings.name:
        raise UnknownRoot(f"no root {root!r} is served here", root=root)
    return root


CatalogDep = Annotated[Catalog, Depends(_catalog)]
StatsDep = Annotated[Stats, Depends(_stats)]
Root = Annotated[str, Depends(_root)]
DatasetPath = Annotated[str, PathParam(description="Dataset path inside the root, with slashes.")]


@router.get(
    "/roots/{root}/manifest",
    summary="Root manifest",
    description="Every dataset of the root with its etag, layout and chunk digests. Send "
    "`If-None-Match` with the last ETag to get 304 when nothing changed. With `since=ETAG`, "
    "only what changed since that manifest (a ManifestDelta: changed datasets, removed paths, "
    "the current seal) while the source still knows it, else the full manifest. Gzipped "
    "when `Accept-Encoding` allows.",
    response_class=Response,
    responses={
        200: {
            "content": JSON_OBJECT,
            "description": "The manifest or the delta; the etag of "
            "the manifest it gives is in `ETag`.",
            "headers": ETAG,
        },
        304: {"description": "Unchanged since the ETag in `If-None-Match`.", "headers": ETAG},
        **responses(400, 404),
    },
)
def manifest(
    root: Root,
    catalog: CatalogDep,
    stats: StatsDep,
    if_none_match: Annotated[str | None, Header()] = None,
    accept_encoding: Annotated[str | None, Header()] = None,
    since: Annotated[str | None, Query(description="The manifest etag the client holds.")] = None,
) -> Response:
    stats.endpoint("manifest")
    since = versions.check_etag(since) if since is not None else None
    etag = catalog.manifest.etag
    headers = {"ETag": f'"{etag}"', "Vary": "Accept-Encoding"}
    if if_none_match and rest.etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    gzip = versions.accepts_gzip(accept_encoding)
    etag, body = catalog.manifest_body(since, gzip)
    headers["ETag"] = f'"{etag}"'
    if gzip:
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type="application/json", headers=headers)


@router.get(
    "/roots/{root}/info/{path:path}",
    summary="Dataset info",
    description="Shape, dtype, chunks, blocks, cparams, vlmeta, nchunks and chunk digests.",
    response_class=Response,
    responses={
        200: {
            "content": JSON_OBJECT,
            "description": "The DatasetInfo.",
            "headers": {"ETag": header("The dataset's etag, quoted.")},
        },
        **responses(400, 404),
    },
)
def info(root: Root, path: DatasetPath, catalog: CatalogDep, stats: StatsDep) -> Response:
    stats.endpoint("info")
    entry = catalog.get(path)
    return Response(
        entry.info.to_bytes(),
        media_type="application/json",
        headers={"ETag": f'"{entry.info.etag}"'},
    )


@router.get(
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
        **responses(400, 404, 503),
    },
)
def chunk(
    root: Root,
    index: Annotated[int, PathParam(description="Chunk index, from 0.")],
    path: DatasetPath,
    catalog: CatalogDep,
    stats: StatsDep,
) -> Response:
    stats.endpoint("chunk")
    data, digest = catalog.get(path).read_chunk(index)
    stats.chunk(path, len(data))
    return Response(
        data, media_type="application/octet-stream", headers={rest.DIGEST_HEADER: digest}
    )


@router.get(
    "/roots/{root}/chunks/{path:path}",
    summary="Many raw chunks, streamed",
    description="The chunks listed in `i` (e.g. `0-7,12`), in that order, each as a 28-byte "
    "header `<u32 index><u64 length><16-byte digest>` followed by the chunk as stored.",
    response_class=StreamingResponse,
    responses={
        200: {"content": BATCH, "description": "The batch frames."},
        **responses(400, 404),
    },
)
def chunks(
    root: Root,
    path: DatasetPath,
    i: Annotated[str, Query(description="Chunk indices and ranges, e.g. `0-7,12`.")],
    catalog: CatalogDep,
    stats: StatsDep,
) -> StreamingResponse:
    stats.endpoint("chunks")
    entry = catalog.get(path)
    return _frames(stats, [(entry, batch_indices(entry, i))])


@router.post(
    "/roots/{root}/chunks",
    summary="Chunks of many datasets, one stream",
    description="The chunks of each listed dataset, datasets in the order listed and chunks "
    "in the order of their `i`, as the frames of the GET batch: one request for many small "
    f"datasets instead of one each. At most {rest.MAX_BATCH} chunks in all.",
    response_class=StreamingResponse,
    responses={
        200: {"content": BATCH, "description": "The batch frames."},
        **responses(400, 404, 413),
    },
    openapi_extra=body_doc(ChunkLists),
)
def many_chunks(
    root: Root, body: ChunkListsBody, catalog: CatalogDep, stats: StatsDep
) -> StreamingResponse:
    stats.endpoint("chunks")
    return _frames(stats, batch_of_many(body, catalog.get))


def _frames(stats: Stats, wanted: list[tuple[Entry, list[int]]]) -> StreamingResponse:
    """The frames of ``wanted``, read about GROUP_BYTES per thread hop. A file that changes
    mid-batch ends the stream short: the reader sees chunks missing and asks again."""

    def read(group: list[tuple[Entry, list[int]]]) -> tuple[list[tuple[int, bytes, str]], bool]:
        """The chunks of ``group`` in order, and whether all of them could be read."""
        out = []
        for entry, indices in group:
            for n in indices:
                try:
                    data, digest = entry.read_chunk(n)
                except CatervaError as exc:
                    log.info("batch of %r cut at chunk %d: %s", entry.path, n, exc)
                    return out, False
                stats.chunk(entry.path, len(data))
                out.append((n, data, digest))
        return out, True

    async def frames():
        for group, _ in rest.pieces(wanted, GROUP_BYTES):
            got, whole = await anyio.to_thread.run_sync(read, group)
            for piece in rest.frame_pieces(got):
                yield piece
            if not whole:
                return

    return StreamingResponse(frames(), media_type=rest.BATCH_TYPE)


@router.get(
    "/roots/{root}/file/{path:path}",
    summary="The whole stored file",
    description="The file as stored at the source (the original bytes for plain files), "
    "streamed. Supports `Range` (206, 416) and `If-Range`.",
    response_class=RangeFileResponse,
    responses={
        200: {"content": BYTES, "description": "The whole file."},
        206: {
            "content": {**BYTES, "multipart/byteranges": {}},
            "description": "The requested byte range(s).",
            "headers": {"Content-Range": header("The range sent, when one.", False)},
        },
        **responses(400, 404, 416, 503),
    },
    openapi_extra=RANGE_HEADERS,
)
def whole_file(root: Root, path: DatasetPath, catalog: CatalogDep, stats: StatsDep) -> Response:
    stats.endpoint("file")
    entry = catalog.get(path)
    try:
        st = os.stat(entry.source)
    except OSError:
        raise UnknownDataset(f"no dataset {path!r} in root {root!r}", path=path) from None
    if StatKey.of(st) != entry.stat:  # being written in place: not what was described
        raise Unavailable(f"{path!r} is being written; retry shortly")
    response = RangeFileResponse(
        entry.source, stat_result=st, media_type="application/octet-stream"
    )
    response.unchanged = entry.unchanged
    return response


@router.get("/stats", summary="Serving counters", description="See caterva.publisher.stats.")
def counters(request: Request, stats: StatsDep) -> dict[str, Any]:
    stats.endpoint("stats")
    return {"root": request.state.settings.name, **stats.snapshot()}


@router.get("/health", summary="Liveness and broker connection")
def health(request: Request, catalog: CatalogDep, stats: StatsDep) -> JSONResponse:
    stats.endpoint("health")
    announcer = request.state.announcer
    return JSONResponse(
        {
            "status": "ok",
            "root": request.state.settings.name,
            "pub_id": announcer.pub_id,
            "session": announcer.session,
            "key": announcer.key,
            "broker_connected": announcer.bus.connected.is_set(),
            "datasets": len(catalog.manifest.datasets),
        }
    )
