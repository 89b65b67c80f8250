"""The subscriber's client API: health, stats, roots, follow, selections (as .npy, or as numpy
prints them), change events. The source API it also serves (dataset info, chunks, files) is
in source.py."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import math
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from caterva.errors import BadSelection, NotSupported
from caterva.protocol import printing, rest, selection
from caterva.protocol.names import check_root
from caterva.service.auth import may_read, readable, require_every, require_grant
from caterva.service.http import BYTES, header, responses
from caterva.subscriber import listing
from caterva.subscriber.deps import CacheDep, EventsDep, FollowerDep, PinsDep, ReadDep, Root
from caterva.subscriber.npy import NPY, NpyResponse

if TYPE_CHECKING:
    import numpy as np

    from caterva.subscriber.follower import Follower
    from caterva.subscriber.read import ReadPath
    from caterva.subscriber.state import Dataset

router = APIRouter(prefix=rest.API)
NDJSON = "application/x-ndjson"


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
async def roots(follower: FollowerDep, pins: PinsDep, request: Request) -> dict:
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
                "pinned": name in pins.roots,
                "replica": pins.progress(name),  # how whole a pinned root is held
                "sources": [
                    {
                        "pub_id": o.pub_id,
                        "url": o.url,
                        "online": o.online,
                        "hops": o.announcement.hops,
                        "broker": o.broker,
                        "learned": o.learned,  # online as the broker says, or as HTTP showed
                        "since": o.since,  # when that was learned (Unix time), or None
                    }
                    for o in offers
                ],
            }
        )
    return {"roots": out}


@router.put(
    "/roots/{root}/follow",
    summary="Follow a root (one manifest request); with pin=true, keep it whole",
    responses=responses(400, 404, 409, 502, 503),
)
async def follow(
    root: Root,
    follower: FollowerDep,
    pins: PinsDep,
    pin: Annotated[
        bool | None,
        Query(
            description="true: fetch every chunk ahead of demand, keep it fresh and never evict "
            "it (409 `pin_too_large` when it cannot fit the cache budget); false: stop pinning "
            "(it stays followed); absent: leave as it is"
        ),
    ] = None,
) -> dict:
    if pin:
        await pins.pin(root)
    else:
        await follower.follow(root)
        if pin is False:
            pins.unpin(root)
    return {
        "root": root,
        "followed": True,
        "datasets": len(follower.datasets[root]),
        "pinned": root in pins.roots,
    }


@router.delete(
    "/roots/{root}/follow",
    summary="Unfollow a root and drop its cached chunks",
    responses=responses(400, 404, 409),
)
async def unfollow(root: Root, follower: FollowerDep) -> dict:
    await follower.unfollow(root)
    return {"root": root, "followed": False}


@router.get(
    "/roots/{root}/datasets",
    summary="The datasets of a followed root by path, a page at a time (prefix or glob)",
    description="A `pattern` without wildcards is a prefix of the paths listed; with them it "
    "matches whole paths: `*` any characters but `/`, `?` one of them, `**/` zero or more "
    "directories, `**` anything (e.g. `stations/2024-*`, `**/*.b2nd`). At most `limit` "
    f"datasets, in path order, after the `cursor` given; `{rest.NEXT_HEADER}` continues the "
    "listing. Written as it is read: any number of datasets in bounded memory.",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {NDJSON: {"schema": {"type": "string"}}},
            "description": "One dataset a line, as a JSON object: its info without chunk digests.",
            "headers": {
                rest.NEXT_HEADER: header(
                    "The `cursor` of the next page; absent when this page ends the listing.",
                    required=False,
                )
            },
        },
        **responses(400, 404, 409),
    },
)
async def datasets(
    root: Root,
    follower: FollowerDep,
    cache: CacheDep,
    pattern: Annotated[str, Query(description="a path prefix, or a glob")] = "",
    limit: Annotated[int, Query(ge=1, le=listing.MAX_LIMIT)] = listing.LIMIT,
    cursor: Annotated[str | None, Query(description="where an earlier page ended")] = None,
) -> StreamingResponse:
    follower.followed(root)
    match = listing.parse(pattern)
    after = listing.decode_cursor(cursor) if cursor is not None else ""
    end, more = listing.page_end(cache.state, root, match, limit, after)
    body = listing.lines(cache.state, root, match, after, end, lambda: root in follower.etags)
    headers = {rest.NEXT_HEADER: listing.encode_cursor(end)} if more else {}
    return StreamingResponse(body, media_type=NDJSON, headers=headers)


SEL = Query(description="e.g. `0:10, ::2, -1` or `...`", max_length=rest.SEL_MAX)
FIELD = Query(description="a field of a structured dtype", max_length=rest.FIELD_MAX)


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
    sel: Annotated[str, SEL] = "...",
    field: Annotated[str | None, FIELD] = None,
) -> Response:
    ds, key, _ = _selection(follower, root, path, sel, field)
    return NpyResponse(await _read(read, ds, key, field))


@router.get(
    "/roots/{root}/printed/{path:path}",
    summary="A numpy-style selection as numpy prints it (summarised when large)",
    description="What `caterva show` prints: the selection's dtype (as in dataset info) and "
    "shape, and numpy's text of it for lines of `width` characters (at least "
    f"{printing.MIN_WIDTH}); of more than {printing.THRESHOLD} values, only the first and last "
    f"{printing.EDGEITEMS} of each axis. 501 `not_supported` when that is more than "
    f"{printing.MAX_VALUES:,} values or {printing.MAX_BYTES:,} bytes of them: read the "
    "selection and print it yourself.",
    responses=responses(400, 404, 409, 501, 502, 503),
)
async def printed(
    root: Root,
    path: str,
    follower: FollowerDep,
    read: ReadDep,
    width: Annotated[int, Query(ge=1, le=printing.MAX_WIDTH)],
    sel: Annotated[str, SEL] = "...",
    field: Annotated[str | None, FIELD] = None,
) -> dict:
    import numpy as np

    from caterva.protocol.dtypes import dtype_to_json

    ds, key, dtype = _selection(follower, root, path, sel, field)
    shape = selection.result_shape(key)
    if not printing.fits(shape, dtype.base.itemsize):  # before any chunk is read
        raise NotSupported(
            f"{root}/{path}[{sel}] prints {printing.printed_values(shape):,} values of "
            f"{dtype.base.itemsize:,} bytes, more than a subscriber prints (at most "
            f"{printing.MAX_VALUES:,}, and {printing.MAX_BYTES:,} bytes): read the selection "
            "and print it"
        )
    array = await _read_printed(read, ds, key, field, dtype.base)
    if selection.is_scalar(selection.parse(sel), key):  # a scalar's own dtype: U6, not U16
        array = np.asarray(array[()])
    text = await asyncio.to_thread(printing.text, array, width)
    return {"dtype": dtype_to_json(array.dtype), "shape": list(array.shape), "text": text}


def _selection(
    follower: Follower, root: str, path: str, sel: str, field: str | None
) -> tuple[Dataset, selection.Key, np.dtype]:
    """The dataset, the normalized key (``sel`` may index a sub-array field's axes too) and
    the dtype (the field's, when given) of ``root/path[sel]``; BadSelection when it is more
    than a subscriber decodes into one answer."""
    from caterva.protocol.dtypes import dtype_from_json

    ds = follower.dataset(root, path)
    dtype = dtype_from_json(ds.info.dtype)
    if field is not None:
        if field not in (dtype.names or ()):
            raise BadSelection(f"{root}/{path} has no field {field!r}")
        dtype = dtype.fields[field][0]
    key = selection.normalize(selection.parse(sel), (*ds.info.shape, *dtype.shape))
    # the answer is decoded here, in memory: bounded, whatever the dataset's size
    nbytes = math.prod(selection.result_shape(key[: len(ds.info.shape)])) * dtype.itemsize
    if nbytes > rest.NPY_MAX:
        raise BadSelection(
            f"{root}/{path}[{sel}] is {nbytes:,} bytes, more than the {rest.NPY_MAX:,} a "
            "subscriber decodes into one answer: select less, read it as chunks (the Python "
            "client's default) or download the dataset"
        )
    return ds, key, dtype


async def _read_printed(
    read: ReadPath, ds: Dataset, key: selection.Key, field: str | None, dtype: np.dtype
) -> np.ndarray:
    """``_read``'s answer as far as numpy prints it: of a summarised selection, only the
    values printed (the ends of each axis) are fetched and decoded, the rest is zeros that
    numpy never reads (the corners of 1/64 of a 1 GiB cube: ~1 ms, against ~5 for all of its
    8 chunks)."""
    from caterva.protocol.gather import read_parts

    shape = selection.result_shape(key)
    ranges = printing.edges(shape)
    if ranges is None or ds.info.kind != "b2nd":  # all of it, or bytes (not an NDArray)
        return await _read(read, ds, key, field)
    ndim = len(ds.info.shape)
    remote, local = key[:ndim], key[ndim:]
    # the corners: each a product of one range per axis of the remote result (the axes of a
    # sub-array field are within each value, read whole)
    corners = list(itertools.product(*ranges[: len(selection.result_shape(remote))]))
    keys = [selection.part(remote, corner) for corner in corners]
    grid = ds.info.chunks, ds.info.chunk_grid
    needed = sorted({i for k in keys for i in selection.touched_chunks(k, *grid)})
    chunks = await read.chunks(ds, needed)  # in memory now: eviction cannot touch them
    parts = await asyncio.to_thread(read_parts, ds.info, keys, chunks)
    out = _zeros(shape, dtype)
    for corner, value in zip(corners, parts):
        if field is not None:
            value = value[field]
        out[tuple(slice(a, b) for a, b in corner)] = value[(Ellipsis, *local)] if local else value
    return out


def _zeros(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Zeros in pages of their own from the kernel: only the pages written cost anything. (The
    service's malloc keeps buffers of up to 16 MiB on its heap, runner.tune_malloc: np.zeros
    clears every byte of one, ~3 ms for 16 MiB.)"""
    import mmap

    import numpy as np

    count = math.prod(shape)
    pages = mmap.mmap(-1, max(count * dtype.itemsize, 1))  # freed with the array
    return np.frombuffer(pages, dtype, count).reshape(shape)


async def _read(read: ReadPath, ds: Dataset, key: selection.Key, field: str | None) -> np.ndarray:
    """``_selection``'s answer, from the chunks it touches."""
    from caterva.protocol.gather import read_selection

    ndim = len(ds.info.shape)
    remote, local = key[:ndim], key[ndim:]
    needed = selection.touched_chunks(remote, ds.info.chunks, ds.info.chunk_grid)
    chunks = await read.chunks(ds, needed)  # in memory now: eviction cannot touch them
    array = await asyncio.to_thread(read_selection, ds.info, remote, chunks.__getitem__)
    if field is not None:
        array = array[field]
    return array[(Ellipsis, *local)] if local else array


@router.post(
    "/roots/{root}/handoff/{path:path}",
    summary="A ticket to have the file written into one of this machine's",
    description="For a client on the subscriber's machine (a loopback connection): a one-use "
    "ticket, the file's size and ETag, and the abstract Unix socket to send the ticket to, "
    "with the descriptor of a file open for writing; the subscriber writes the dataset's file "
    "(as `/file` sends it) into it. 501 `not_supported` for other clients, or where `/file` "
    "cannot frame the dataset.",
    responses=responses(400, 404, 409, 501, 502, 503),
)
async def handoff(root: Root, path: str, follower: FollowerDep, request: Request) -> dict:
    local = request.state.handoff
    if local is None or not _loopback(request.client.host if request.client else ""):
        raise NotSupported("no local handoff for this client: use /file")
    ds = follower.dataset(root, path)
    file = await request.state.source.file(ds)
    return {
        "ticket": local.ticket(file),
        "socket": local.name,
        "size": file.size,
        "etag": ds.info.etag,
    }


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@router.get(
    "/events",
    summary="Change events of followed roots, as they happen (NDJSON)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {NDJSON: {"schema": {"type": "string"}}},
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

    return StreamingResponse(lines(), media_type=NDJSON)
