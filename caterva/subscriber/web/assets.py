"""What the pages link to that is not a page: a plane as a PNG, the view as .npy, the whole
dataset as its file, an image file's bytes, and the page's own script and style."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from caterva.errors import BadRequest, NotFound
from caterva.subscriber import files
from caterva.subscriber.npy import NpyResponse
from caterva.subscriber.state import Dataset
from caterva.subscriber.web import describe, guard, image
from caterva.subscriber.web.pages import granted_root
from caterva.subscriber.web.render import page
from caterva.subscriber.web.window import View, select

STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {"app.js": "text/javascript", "style.css": "text/css", "icon.svg": "image/svg+xml"}


def _dataset(request: Request) -> Dataset:
    return request.state.follower.dataset(granted_root(request), request.path_params["path"])


@page
async def png(request: Request) -> Response:
    """The view's plane, every k-th row and column (window.IMAGE_SIDE), as a PNG."""
    ds = _dataset(request)
    view = View.parse(ds.info, request.query_params)
    plane = view.oriented(await select(request.state.read, ds, view.plane_key()))
    body = await asyncio.to_thread(lambda: image.encode_png(image.colour(plane)))
    return Response(body, media_type="image/png", headers={"Cache-Control": "no-store"})


@page
async def npy(request: Request) -> Response:
    """The table's window (``part=window``) or the whole plane (``part=plane``) as .npy."""
    ds = _dataset(request)
    view = View.parse(ds.info, request.query_params)
    part = request.query_params.get("part", "window")
    if part not in ("window", "plane"):
        raise BadRequest(f"part must be window or plane, not {part!r}")
    key = view.window_key() if part == "window" else view.plane_key(strided=False)
    array = await select(request.state.read, ds, key)
    if view.cols is not None:
        array = view.oriented(array)
    response = NpyResponse(array)
    stem = os.path.splitext(os.path.basename(ds.path))[0] or "selection"
    response.headers["Content-Disposition"] = f'attachment; filename="{_ascii(stem)}.npy"'
    return response


def _ascii(name: str) -> str:
    """A file name safe inside a quoted header value."""
    return "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)


@page
async def download(request: Request) -> Response:
    """The dataset as one file, as ``GET /v1/roots/{root}/file/{path}`` sends it."""
    ds = _dataset(request)
    return await files.file_response(request.state.read, request.state.cache, ds)


@page
async def raw(request: Request) -> Response:
    """An image file's bytes, for the page's <img>; sandboxed if opened on its own."""
    ds = _dataset(request)
    kind = describe.image_type(ds.path)
    if ds.info.kind != "file" or kind is None or ds.info.size > describe.IMAGE_BYTES:
        raise NotFound(f"{ds.path} is not an image the page shows")
    body = (await select(request.state.read, ds, (slice(0, ds.info.size),))).tobytes()
    return guard.secure(Response(body, media_type=kind), guard.RAW_HEADERS)


@page
async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC_TYPES:
        raise NotFound(f"no static file {name!r}")
    return FileResponse(STATIC / name, media_type=STATIC_TYPES[name])
