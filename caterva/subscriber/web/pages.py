"""The pages: every root, one root's datasets, one dataset; and follow / unfollow.

Each reads what the API reads, the same way: the roots listing is the API's own
(caterva.subscriber.api.roots, grants applied there), datasets come from the follower, values
through the read path (window.select), and a root not granted is 403 as on the API.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from caterva.errors import BadRequest
from caterva.protocol.dtypes import dtype_from_json
from caterva.protocol.names import check_path, check_root
from caterva.subscriber import api
from caterva.subscriber.web import describe, guard, listing
from caterva.subscriber.web.render import form, local, page, render
from caterva.subscriber.web.window import View, select, table


def granted_root(request: Request) -> str:
    """The path's root, checked, and granted to the user."""
    guard.user(request)
    root = check_root(request.path_params["root"])
    guard.require(request, root)
    return root


@page
async def roots(request: Request) -> Response:
    guard.user(request)
    listed = await api.roots(request.state.follower, request.state.pins, request)
    return render(request, "roots.html", roots=listed["roots"], live="roots")


@page
async def follow(request: Request) -> Response:
    guard.user(request)
    fields = await form(request)
    guard.check_form(request, fields)
    root = check_root(fields.get("root", ""))
    guard.require(request, root)
    follower = request.state.follower
    if fields.get("action") == "unfollow":
        await follower.unfollow(root)
    else:
        await follower.follow(root)
    return RedirectResponse(local(fields.get("next", "/")), status_code=303)


def _prefix(text: str) -> str:
    """A folder of a root: "" (the top), or a dataset path prefix ending in "/"."""
    if not text:
        return ""
    if not text.endswith("/"):
        raise BadRequest(f"a folder ends with '/': {text!r}")
    check_path(text[:-1])
    return text


@page
async def root(request: Request) -> Response:
    name = granted_root(request)
    follower = request.state.follower
    held = follower.followed(name)
    params = request.query_params
    prefix = _prefix(params.get("prefix", ""))
    query, after = params.get("q", ""), params.get("a", "")
    db = follower.state.db
    if query:
        found = listing.search(follower.state, name, query, after)
    else:
        found = listing.folder(db, name, prefix, after)
    # the index and the follower change together (one transaction, on this thread)
    datasets = {e.path: held[e.path] for e in found.entries if not e.folder and e.path in held}
    cached = listing.cached(db, [ds.id for ds in datasets.values()])
    entries = []
    for e in found.entries:
        ds = datasets.get(e.path)
        if e.folder:
            entries.append({"entry": e})
        elif ds is not None:
            held_chunks = cached.get(ds.id, (0, 0))[0]
            dtype = str(dtype_from_json(ds.info.dtype))
            entries.append({"entry": e, "ds": ds, "dtype": dtype, "cached": held_chunks})
    parts = prefix.split("/")[:-1]
    crumbs = [(part, "/".join(parts[: i + 1]) + "/") for i, part in enumerate(parts)]
    return render(
        request,
        "root.html",
        root=name,
        total=len(held),
        prefix=prefix,
        query=query,
        crumbs=crumbs,
        entries=entries,
        after=found.after,
        live="root",
    )


def _numeric(view: View, dtype) -> bool:
    """Can the view be an image: a 2-D plane of numbers."""
    if view.field:
        dtype = dtype.fields[view.field][0]
    return view.cols is not None and dtype.kind in "biuf" and dtype.shape == ()


@page
async def dataset(request: Request) -> Response:
    name = granted_root(request)
    follower, read = request.state.follower, request.state.read
    ds = follower.dataset(name, request.path_params["path"])
    info = ds.info
    context = {
        "root": name,
        "ds": ds,
        "info": info,
        "live": "dataset",
        "here": f"/roots/{name}/{quote(ds.path, safe='/')}",
        "folder": ds.path.rpartition("/")[0],
    }
    if info.kind == "file":
        context["preview"] = await describe.preview(read, ds)
        context["image_type"] = describe.image_type(ds.path)
    else:
        view = View.parse(info, request.query_params)
        mode = request.query_params.get("view", "table")
        if mode not in ("table", "image"):
            raise BadRequest(f"view must be table or image, not {mode!r}")
        numeric = _numeric(view, dtype_from_json(info.dtype))
        if mode == "image" and not numeric:
            raise BadRequest("this view has no image: it needs a 2-D plane of numbers")
        context.update(view=view, mode=mode, numeric=numeric, pages=view.pages())
        if mode == "table":
            context["table"] = table(view, await select(read, ds, view.window_key()))
        else:
            context["steps"] = view.steps()
    context.update(
        metadata=describe.metadata(info),
        fields=describe.fields(info),
        vlmeta=describe.vlmeta(info),
        # after the read: what it fetched shows as held
        chunk_map=describe.chunk_map(ds, follower.state.present(ds.id)),
    )
    return render(request, "dataset.html", **context)
