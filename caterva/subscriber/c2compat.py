"""The read side of the Caterva2 HTTP API, so ``blosc2.C2Array`` (``blosc2.open(URLPath)``),
its lazy expressions and ``caterva2.Client`` read the roots this subscriber follows. A path's
first element is the root:

    GET  /api/roots                          {name: {"name": name}}: the followed roots
    GET  /api/list/{root}[/{path}]           dataset paths under a root or a directory
    GET  /api/info/{root}/{path}             shape, chunks, blocks, dtype, schunk (cparams...)
    GET  /api/fetch/{root}/{path}            slice_, indices (JSON) or field: a Blosc2 frame
    POST /api/fetch/{root}/{path}            the same, the parameters in a JSON body
    GET  /api/chunk/{root}/{path}?nchunk=N   a chunk exactly as stored
    GET  /api/download/{root}/{path}         the file, as /v1/roots/{root}/file sends it
    POST /auth/jwt/login                     form username (an email) + password: a cookie
    POST /api/upload/..., remove, ...        501 not_supported: a subscriber is read-only
                                             (other methods on the paths above: 405)

Everything goes through the subscriber's read path (ReadPath: the cache, its stats, one fetch
per chunk upstream), and only the chunks a request touches. ``api/info`` says
``accept_ranges: "none"``: a byte range of a file we build as it is sent needs every chunk's
size first, so blosc2 reads whole chunks (``api/chunk``) or asks ``api/fetch`` instead.

With --auth, the login cookie is a caterva token: ``Cookie: caterva_token=TOKEN`` is read as
``Authorization: Bearer TOKEN`` on /api/ paths only, so the same grants apply and the
cross-site requests a cookie invites reach no route that changes anything.
"""

from __future__ import annotations

import asyncio
from http.cookies import CookieError, SimpleCookie
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from caterva.errors import BadRequest, BadSelection, ChunkOutOfRange, NotSupported
from caterva.errors import UnknownDataset as Unknown
from caterva.protocol import rest, selection
from caterva.service.auth import readable
from caterva.service.http import BYTES, JSON_OBJECT, body_doc, json_body, read_body, responses
from caterva.subscriber.deps import CacheDep, FollowerDep, ReadDep, Root
from caterva.subscriber.files import file_response
from caterva.subscriber.state import Dataset

PREFIX = "/api"
LOGIN = "/auth/jwt/login"
COOKIE = "caterva_token"
FRAME = {200: {"content": BYTES, "description": "A Blosc2 frame (cframe) of the answer."}}
READ_ERRORS = (400, 404, 409, 502, 503)

router = APIRouter(prefix=PREFIX, tags=["Caterva2 API (read-only)"])


@router.get("/roots", summary="The followed roots, as Caterva2 lists them")
async def roots(follower: FollowerDep, request: Request) -> dict:
    return {name: {"name": name} for name in readable(request, sorted(follower.etags))}


@router.get(
    "/list/{root}", summary="Every dataset path of a root", responses=responses(400, 404, 409)
)
async def list_root(root: Root, follower: FollowerDep) -> list[str]:
    return sorted(follower.followed(root))


@router.get(
    "/list/{root}/{path:path}",
    summary="The dataset paths under a directory (relative to it), or a dataset's own name",
    responses=responses(400, 404, 409),
)
async def list_path(root: Root, path: str, follower: FollowerDep) -> list[str]:
    paths = follower.followed(root)
    if path in paths:
        return [path.rsplit("/", 1)[-1]]
    inside = _under(paths, path)
    if not inside:
        raise Unknown(f"no dataset or directory {path!r} in root {root!r}")
    return inside


@router.get(
    "/info/{root}/{path:path}",
    summary="A dataset's metadata as Caterva2 gives it (a directory's too)",
    responses={200: {"content": JSON_OBJECT}, **responses(400, 404, 409)},
)
async def info(root: Root, path: str, follower: FollowerDep) -> dict:
    paths = follower.followed(root)
    if path not in paths and (inside := _under(paths, path)):
        return {"kind": "group", "mtime": None, "nfiles": len(inside)}
    from caterva.subscriber import c2model  # numpy: on the first Caterva2 request only

    return c2model.metadata(follower.dataset(root, path).info)


class FetchBody(BaseModel):
    """What ``GET api/fetch`` takes as query parameters, for keys too long for a URL."""

    slice_: str | None = None
    indices: str | None = None
    field: str | None = None
    filter: str | None = None


FETCH_DOC = {
    "description": "`slice_`: e.g. `0:10, 3` (step 1); `indices`: JSON, one entry per axis "
    '(an int, `"start:stop"`, null, or a list of coordinates), as numpy indexes; `field`: one '
    "field of a structured dtype. Expressions (`filter`) are not evaluated (400). A `Range` "
    "is refused (416): `api/info` says `accept_ranges: none`.",
    "responses": {**FRAME, **responses(*READ_ERRORS, 416)},
}


@router.get("/fetch/{root}/{path:path}", summary="A selection, as a Blosc2 frame", **FETCH_DOC)
async def fetch(
    root: Root,
    path: str,
    follower: FollowerDep,
    read: ReadDep,
    request: Request,
    slice_: Annotated[str | None, Query()] = None,
    indices: Annotated[str | None, Query()] = None,
    field: Annotated[str | None, Query()] = None,
    filter: Annotated[str | None, Query()] = None,  # noqa: A002 - Caterva2's name
) -> Response:
    params = FetchBody(slice_=slice_, indices=indices, field=field, filter=filter)
    return await _fetch(follower.dataset(root, path), params, read, request)


@router.post(
    "/fetch/{root}/{path:path}",
    summary="A selection, as a Blosc2 frame; the parameters in the body",
    openapi_extra=body_doc(FetchBody),
    **FETCH_DOC,
)
async def fetch_post(
    root: Root,
    path: str,
    body: Annotated[FetchBody, Depends(json_body(FetchBody))],
    follower: FollowerDep,
    read: ReadDep,
    request: Request,
) -> Response:
    return await _fetch(follower.dataset(root, path), body, read, request)


async def _fetch(ds: Dataset, params: FetchBody, read, request: Request) -> Response:
    if "range" in request.headers:
        # built as it is sent, so there is no file to take a range of (see api/info)
        return _error(416, "range_not_satisfiable", "api/fetch serves no ranges")
    if params.filter:
        raise BadSelection("a subscriber evaluates no expressions (filter): select, then filter")
    if params.indices is not None and (params.slice_ or params.field):
        raise BadSelection("indices cannot be combined with slice_ or field")
    from caterva.subscriber import c2model

    info = ds.info
    dtype = c2model.dtype_of(info)
    if params.field is not None and params.field not in (dtype.names or ()):
        raise BadSelection(f"{ds.root}/{ds.path} has no field {params.field!r}")
    if params.indices is not None:
        key = c2model.parse_indices(params.indices, info.shape)
    else:
        key = selection.normalize(selection.parse(params.slice_ or ""), info.shape)
    count = c2model.result_size(key)
    if count * dtype.itemsize > rest.NPY_MAX:
        raise BadSelection(
            f"the selection is {count * dtype.itemsize:,} bytes, more than the "
            f"{rest.NPY_MAX:,} a subscriber builds into one answer: select less"
        )
    needed = c2model.touched(key, info)
    chunks = await read.chunks(ds, needed)  # in memory now: eviction cannot touch them
    frame = await asyncio.to_thread(c2model.frame, info, key, chunks, params.field)
    return Response(frame, media_type="application/octet-stream")


@router.get(
    "/chunk/{root}/{path:path}",
    summary="A chunk exactly as stored",
    responses={200: {"content": BYTES}, **responses(*READ_ERRORS)},
)
async def chunk(
    root: Root,
    path: str,
    follower: FollowerDep,
    read: ReadDep,
    nchunk: Annotated[int, Query(description="the chunk's flat index, C order")],
) -> Response:
    ds = follower.dataset(root, path)
    if not 0 <= nchunk < ds.info.nchunks:
        raise ChunkOutOfRange(f"{root}/{path} has {ds.info.nchunks} chunks, not {nchunk}")
    data = (await read.chunks(ds, [nchunk]))[nchunk]
    return Response(data, media_type="application/octet-stream")


@router.get(
    "/download/{root}/{path:path}",
    summary="The whole file, as caterva's own download writes it",
    responses={200: {"content": BYTES}, **responses(*READ_ERRORS)},
)
async def download(
    root: Root, path: str, follower: FollowerDep, read: ReadDep, cache: CacheDep
) -> Response:
    return await file_response(read, cache, follower.dataset(root, path))


# what Caterva2 writes with; each answers 501 (other methods on the read paths answer 405)
WRITES = (
    "upload", "upload_lazyarr", "lazyexpr", "load_from_url", "append", "unfold", "publish",
    "move", "copy", "remove", "addnotebook", "adduser",
)  # fmt: skip


async def writes(request: Request) -> None:
    raise NotSupported(
        f"a caterva subscriber is read-only: {request.url.path} is not supported "
        "(publish files with `caterva pub` instead)"
    )


for _op in WRITES:
    router.add_api_route(f"/{_op}/{{rest:path}}", writes, methods=["POST"], include_in_schema=False)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _under(paths, directory: str) -> list[str]:
    prefix = directory.strip("/") + "/"
    return sorted(p[len(prefix) :] for p in paths if p.startswith(prefix))


# --- login --------------------------------------------------------------------------------------


async def login(request: Request) -> Response:
    """Caterva2's login (a form, as fastapi-users takes it): a caterva token in a cookie."""
    auth = getattr(request.app.state, "auth", None)
    if auth is None:
        return _error(400, "bad_request", "this subscriber does not require login")
    try:
        form = parse_qs((await read_body(request)).decode(), max_num_fields=8)
        email, password = form["username"][0], form["password"][0]
    except (UnicodeDecodeError, ValueError, KeyError):
        raise BadRequest("send the form fields username (your email) and password") from None
    token, claims = await asyncio.to_thread(auth.login, email, password)  # argon2: slow
    response = Response(status_code=204)
    response.set_cookie(
        COOKIE, token, max_age=int(claims.expiry - claims.issued), httponly=True, samesite="strict"
    )
    return response


class CookieToken:
    """ASGI middleware: on /api/ paths, a ``caterva_token`` cookie stands for a bearer token
    (the Caterva2 clients send their login as a cookie), unless one is sent already."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX + "/"):
            headers = scope["headers"]
            names = {name for name, _ in headers}
            if b"cookie" in names and b"authorization" not in names:
                token = _cookie(b"; ".join(v for k, v in headers if k == b"cookie"))
                if token:
                    bearer = (b"authorization", b"Bearer " + token.encode("latin-1"))
                    scope = {**scope, "headers": [*headers, bearer]}
        await self.app(scope, receive, send)


def _cookie(value: bytes) -> str | None:
    try:
        morsel = SimpleCookie(value.decode("latin-1")).get(COOKIE)
    except CookieError:
        return None
    return morsel.value if morsel else None


def install(app: FastAPI) -> None:
    """Mount the API; after auth.install, so the cookie is read before a token is checked."""
    app.include_router(router)
    app.add_route(LOGIN, login, methods=["POST"], include_in_schema=False)
    app.add_middleware(CookieToken)
