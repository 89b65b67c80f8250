"""The subscriber's client API: health, stats, roots, follow, handoffs, change events.
Selections are in selections.py; the source API it also serves (dataset info, chunks, files)
in source.py."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from caterva.config import is_loopback
from caterva.errors import NotSupported
from caterva.protocol import rest
from caterva.protocol.names import check_root
from caterva.service.auth import may_read, readable, require_every, require_grant
from caterva.service.http import header, responses
from caterva.subscriber import listing
from caterva.subscriber.deps import CacheDep, EventsDep, FollowerDep, PinsDep, Root

if TYPE_CHECKING:
    pass

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
    if local is None or not is_loopback(request.client.host if request.client else ""):
        raise NotSupported("no local handoff for this client: use /file")
    ds = follower.dataset(root, path)
    file = await request.state.source.file(ds)
    return {
        "ticket": local.ticket(file),
        "socket": local.name,
        "size": file.size,
        "etag": ds.info.etag,
    }


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
