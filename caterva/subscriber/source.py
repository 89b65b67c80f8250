"""The source API a subscriber serves for the roots it follows (caterva.protocol.rest): to a
LAN as a mirror, and to its own clients for raw chunks and whole files. Every answer is of one
version of a dataset: the Dataset a request starts with (read.py)."""

from __future__ import annotations

import asyncio
import collections
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from caterva.errors import ChunkOutOfRange
from caterva.protocol import rest
from caterva.service.http import (
    BATCH,
    BYTES,
    JSON_OBJECT,
    ChunkLists,
    ChunkListsBody,
    batch_indices,
    batch_of_many,
    body_doc,
    frames_to_the_end,
    header,
    responses,
)
from caterva.service.ranges import RANGE_HEADERS
from caterva.subscriber.cache import Wanted
from caterva.subscriber.deps import CacheDep, FollowerDep, ReadDep, Root
from caterva.subscriber.files import file_response
from caterva.subscriber.read import ReadPath

router = APIRouter(prefix=rest.API)

WINDOW_BYTES = 8 << 20  # a batch stream holds about this many compressed bytes, and as many ahead
AHEAD = 16  # windows being read ahead at most (each is one source request when cold)
ETAG = {"ETag": header("The manifest's etag, quoted.")}
FILE_HEADERS = {
    "ETag": header("The dataset's etag, quoted (for `If-Range`)."),
    "Accept-Ranges": header("`bytes`."),
}


@router.get(
    "/roots/{root}/manifest",
    summary="Manifest of a followed root (ETag / 304)",
    response_class=Response,
    responses={
        200: {"content": JSON_OBJECT, "description": "The manifest.", "headers": ETAG},
        304: {"description": "Unchanged since the ETag in `If-None-Match`.", "headers": ETAG},
        **responses(400, 404, 409),
    },
)
async def manifest(
    root: Root, follower: FollowerDep, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    etag, body = follower.manifest_body(root)
    headers = {"ETag": f'"{etag}"'}
    if if_none_match and rest.etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get(
    "/roots/{root}/chunk/{index}/{path:path}",
    summary="One raw compressed chunk",
    response_class=Response,
    responses={
        200: {
            "content": BYTES,
            "description": "The compressed chunk.",
            "headers": {rest.DIGEST_HEADER: header("The chunk's digest.")},
        },
        **responses(400, 404, 409, 502, 503),
    },
)
async def chunk(
    root: Root, index: int, path: str, follower: FollowerDep, read: ReadDep
) -> Response:
    ds = follower.dataset(root, path)
    if not 0 <= index < ds.info.nchunks:
        raise ChunkOutOfRange(f"chunk {index} out of range: {path} has {ds.info.nchunks} chunks")
    data = (await read.chunks(ds, [index]))[index]
    return Response(
        data,
        media_type="application/octet-stream",
        headers={rest.DIGEST_HEADER: ds.info.digests[index]},
    )


@router.get(
    "/roots/{root}/chunks/{path:path}",
    summary="Many raw chunks, streamed as frames",
    response_class=StreamingResponse,
    responses={
        200: {"content": BATCH, "description": "The batch frames."},
        **responses(400, 404, 409, 502, 503),
    },
)
async def chunks(
    root: Root,
    path: str,
    follower: FollowerDep,
    read: ReadDep,
    i: Annotated[str, Query(description="chunk indices, e.g. `0-7,12`")],
) -> StreamingResponse:
    ds = follower.dataset(root, path)
    return await _stream_frames(read, [(ds, batch_indices(ds, i))])


@router.post(
    "/roots/{root}/chunks",
    summary="Chunks of many datasets in one stream of frames",
    description="The chunks of each listed dataset, datasets in the order listed and chunks in "
    "the order of their `i`, as the frames of the GET batch. For many small datasets: one "
    f"request instead of one each. At most {rest.MAX_BATCH} chunks in all.",
    response_class=StreamingResponse,
    responses={
        200: {"content": BATCH, "description": "The batch frames."},
        **responses(400, 404, 409, 413, 502, 503),
    },
    openapi_extra=body_doc(ChunkLists),
)
async def many_chunks(
    root: Root, body: ChunkListsBody, follower: FollowerDep, read: ReadDep
) -> StreamingResponse:
    return await _stream_frames(read, batch_of_many(body, lambda p: follower.dataset(root, p)))


async def _stream_frames(read: ReadPath, wanted: Wanted) -> StreamingResponse:
    """Frames of ``wanted`` in order, read (or fetched from the source) in windows of about
    WINDOW_BYTES, with as many bytes being read ahead while a window is sent. Small datasets
    share a window: one cache lookup, and one source request when cold."""
    windows = rest.pieces(wanted, WINDOW_BYTES)
    first = _start(read.chunks_many(windows[0][0]))
    await first  # errors surface before streaming

    async def frames():
        ahead = collections.deque([first])
        planned, ahead_bytes = 1, windows[0][1]
        try:
            for parts, size in windows:
                # keep about WINDOW_BYTES being read beyond the window being sent
                while (
                    planned < len(windows)
                    and ahead_bytes - size < WINDOW_BYTES
                    and len(ahead) < AHEAD
                ):
                    nxt = windows[planned]
                    ahead.append(_start(read.chunks_many(nxt[0])))
                    planned, ahead_bytes = planned + 1, ahead_bytes + nxt[1]
                got = await ahead.popleft()
                ahead_bytes -= size
                for piece in rest.frame_pieces(
                    (n, chunks.pop(n), ds.info.digests[n])
                    for (ds, part), chunks in zip(parts, got)
                    for n in part
                ):
                    yield piece
        finally:
            for task in ahead:
                task.cancel()

    return StreamingResponse(frames_to_the_end(frames()), media_type=rest.BATCH_TYPE)


def _start(coro) -> asyncio.Task:
    """A task whose failure is not reported as never retrieved when it is cancelled unread."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


@router.get(
    "/roots/{root}/file/{path:path}",
    summary="The whole dataset as a file: a Blosc2 file, or a plain file's original bytes",
    description="Streamed as it is made. Supports one `Range` (206, 416) and `If-Range`.",
    response_class=Response,
    responses={
        200: {"content": BYTES, "description": "The whole file.", "headers": FILE_HEADERS},
        206: {
            "content": BYTES,
            "description": "The requested byte range.",
            "headers": {**FILE_HEADERS, "Content-Range": header("The range sent.")},
        },
        **responses(400, 404, 409, 416, 502, 503),
    },
    openapi_extra=RANGE_HEADERS,
)
async def file(
    root: Root, path: str, follower: FollowerDep, read: ReadDep, cache: CacheDep
) -> Response:
    return await file_response(read, cache, follower.dataset(root, path))
