"""The subscriber's HTTP API: the client API (roots, follow, data, events) and, for the roots
it follows, the same source API a publisher serves (caterva.protocol.rest)."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from caterva.errors import BadSelection, ChunkOutOfRange
from caterva.protocol import rest, selection
from caterva.protocol.names import check_root
from caterva.service.auth import may_read, readable, require_every, require_grant
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
from caterva.subscriber.cache import Cache, Wanted
from caterva.subscriber.events import Events
from caterva.subscriber.files import file_response
from caterva.subscriber.follower import Follower
from caterva.subscriber.npy import NPY, NpyResponse
from caterva.subscriber.read import ReadPath

router = APIRouter(prefix=rest.API)
log = logging.getLogger("caterva.subscriber")

WINDOW_BYTES = 8 << 20  # a batch stream holds about this many compressed bytes, and as many ahead
AHEAD = 16  # windows being read ahead at most (each is one source request when cold)
ETAG = {"ETag": header("The manifest's etag, quoted.")}
FILE_HEADERS = {
    "ETag": header("The dataset's etag, quoted (for `If-Range`)."),
    "Accept-Ranges": header("`bytes`."),
}


# dependencies are async: they do no I/O, and a plain def would cost a thread hop per request
async def _follower(request: Request) -> Follower:
    return request.state.follower


async def _cache(request: Request) -> Cache:
    return request.state.cache


FollowerDep = Annotated[Follower, Depends(_follower)]


async def _read(request: Request) -> ReadPath:
    return request.state.read


async def _events(request: Request) -> Events:
    return request.state.events


ReadDep = Annotated[ReadPath, Depends(_read)]
EventsDep = Annotated[Events, Depends(_events)]
CacheDep = Annotated[Cache, Depends(_cache)]


async def _root(root: str) -> str:
    return check_root(root)


Root = Annotated[str, Depends(_root)]


@router.get("/health", summary="Liveness, and whether the MQTT broker is connected")
async def health(request: Request) -> dict:
    body = {"status": "ok", "broker_connected": request.state.bus.connected.is_set()}
    mirror = request.state.mirror
    if mirror is not None:  # republishing: who we are to the LAN
        body["mirror"] = {
            "pub_id": mirror.pub_id,
            "url": mirror.url,
            "broker_connected": mirror.bus.connected.is_set(),
        }
    return body


@router.get(
    "/stats",
    summary="Cache counters: hits, misses, bytes fetched, evictions, usage",
    description="With --auth: for users granted every followed root (403 otherwise).",
)
async def stats(cache: CacheDep, follower: FollowerDep, request: Request) -> dict:
    require_every(request, follower.etags)  # the counters sum every followed root
    counters = dict.fromkeys(("hits", "misses", "fetched_bytes", "evicted", "passed_through"), 0)
    return {**counters, **cache.stats, "used": cache.used, "budget": cache.budget}


@router.get("/roots", summary="Every announced or followed root, its source and state")
async def roots(follower: FollowerDep, request: Request) -> dict:
    directory = follower.directory
    await directory.synced.wait()
    out = []
    # with --auth, roots not granted to the user are absent, not shown as forbidden
    for name in readable(request, sorted(set(directory.roots()) | set(follower.etags))):
        chosen = directory.choose(name)
        offers = directory.offers(name)
        best = chosen or (offers[0] if offers else None)
        followed = name in follower.etags
        key = follower.trust.key(name)
        seal = follower.seals.get(name)
        out.append(
            {
                "root": name,
                "online": chosen is not None,
                "followed": followed,
                "datasets": len(follower.datasets[name])
                if followed
                else (best.announcement.datasets if best else 0),
                "source": best.url if best else None,
                "source_id": best.pub_id if best else None,
                "origin": best.announcement.origin if best else None,
                "hops": best.announcement.hops if best else [],
                "key": key[0] if key else None,  # the signing key the root is bound to
                "key_from": key[1] if key else None,
                "version": seal.version if seal else None,
                "problem": follower.problems.get(name),  # why the last resync failed
                "sources": [
                    {
                        "pub_id": o.pub_id,
                        "url": o.url,
                        "online": o.online,
                        "hops": o.announcement.hops,
                        "broker": o.broker,
                    }
                    for o in offers
                ],
            }
        )
    return {"roots": out}


@router.put(
    "/roots/{root}/follow",
    summary="Follow a root (one manifest request)",
    responses=responses(400, 404, 502, 503),
)
async def follow(root: Root, follower: FollowerDep) -> dict:
    await follower.follow(root)
    return {"root": root, "followed": True, "datasets": len(follower.datasets[root])}


@router.delete(
    "/roots/{root}/follow",
    summary="Unfollow a root and drop its cached chunks",
    responses=responses(400, 404, 409),
)
async def unfollow(root: Root, follower: FollowerDep) -> dict:
    await follower.unfollow(root)
    return {"root": root, "followed": False}


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
    "/roots/{root}/info/{path:path}",
    summary="Dataset info, with how much is cached",
    responses=responses(400, 404, 409),
)
async def info(root: Root, path: str, follower: FollowerDep, cache: CacheDep) -> dict:
    ds = follower.dataset(root, path)
    chunks, nbytes = cache.state.cached(ds.id)
    return {**ds.info.to_dict(), "cached": {"chunks": chunks, "bytes": nbytes}}


@router.get(
    "/roots/{root}/data/{path:path}",
    summary="A numpy-style selection, as an .npy array",
    response_class=Response,
    responses={
        200: {
            "content": {NPY: BYTES["application/octet-stream"]},
            "description": "The selected values (NumPy .npy).",
        },
        **responses(400, 404, 409, 502, 503),
    },
)
async def data(
    root: Root,
    path: str,
    follower: FollowerDep,
    read: ReadDep,
    sel: Annotated[str, Query(description="e.g. `0:10, ::2, -1` or `...`")] = "...",
    field: Annotated[str | None, Query(description="a field of a structured dtype")] = None,
) -> Response:
    from caterva.protocol.layout import dtype_from_json, read_selection

    ds = follower.dataset(root, path)
    key = selection.normalize(selection.parse(sel), ds.info.shape)
    dtype = dtype_from_json(ds.info.dtype)
    if field is not None:
        if field not in (dtype.names or ()):
            raise BadSelection(f"{root}/{path} has no field {field!r}")
        dtype = dtype.fields[field][0]
    # the answer is decoded here, in memory: bounded, whatever the dataset's size
    nbytes = math.prod(selection.result_shape(key)) * dtype.itemsize
    if nbytes > rest.NPY_MAX:
        raise BadSelection(
            f"{root}/{path}[{sel}] is {nbytes:,} bytes, more than the {rest.NPY_MAX:,} a "
            "subscriber decodes into one answer: select less, read it as chunks (the Python "
            "client's default) or download the dataset"
        )
    needed = selection.touched_chunks(key, ds.info.chunks, ds.info.chunk_grid)
    chunks = await read.chunks(ds, needed)  # in memory now: eviction cannot touch them
    array = await asyncio.to_thread(read_selection, ds.info, key, chunks.__getitem__)
    if field is not None:
        array = array[field]
    return NpyResponse(array)


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


@router.get(
    "/events",
    summary="Change events of followed roots, as they happen (NDJSON)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            "description": "One JSON event per line, until the client hangs up.",
        },
        **responses(400, 404, 409),
    },
)
async def events(
    follower: FollowerDep,
    feed: EventsDep,
    request: Request,
    root: Annotated[str | None, Query(description="only this root")] = None,
) -> StreamingResponse:
    if root is not None:
        require_grant(request, check_root(root))
        follower.followed(root)

    async def lines():
        yield b""  # send the headers now, so a client knows it is watching
        async for event in feed.watch():
            # asked per event: a revoke also ends what an open stream shows
            if (root is None or event["root"] == root) and may_read(request, event["root"]):
                yield json.dumps(event).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")
