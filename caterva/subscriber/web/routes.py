"""The web page's routes, beside the API on the same subscriber.

    GET  /                                 every root the user may read; follow / unfollow
    GET  /roots/{root}?prefix=&q=&a=       a root's datasets: a folder, or a search, paged
    GET  /roots/{root}/{path}?view=...     a dataset: metadata, chunk map, table or image
    POST /ui/follow                        follow or unfollow (a form: root, action, csrf)
    GET  /ui/events                        live updates (server-sent events)
    GET  /ui/png|npy|file|raw/{root}/{path} a plane as PNG, the view as .npy, the whole
                                           file, an image file's bytes
    GET  /login  POST /login  POST /logout with --auth
    GET  /static/{name}                    the page's script and style

They are plain Starlette routes: not in the OpenAPI document, and not under the API's login
check, which wants an ``Authorization`` header a browser page cannot hold safely: each page
handler checks the login cookie itself (guard.user), with the same accounts and grants.
"""

from __future__ import annotations

import importlib
import secrets

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def lazy(handler: str):
    """The endpoint ``module.function`` of this package, imported on its first request: the
    page's modules (jinja2, numpy) cost every subscriber ~6 MiB of memory, page or not."""
    module, name = handler.split(".")

    async def endpoint(request: Request) -> Response:
        found = importlib.import_module(f"{__package__}.{module}")
        return await getattr(found, name)(request)

    return endpoint


ROUTES = [
    Route("/", lazy("pages.roots"), methods=["GET"]),
    Route("/roots/{root}", lazy("pages.root"), methods=["GET"]),
    Route("/roots/{root}/{path:path}", lazy("pages.dataset"), methods=["GET"]),
    Route("/ui/follow", lazy("pages.follow"), methods=["POST"]),
    Route("/ui/events", lazy("live.events"), methods=["GET"]),
    Route("/ui/png/{root}/{path:path}", lazy("assets.png"), methods=["GET"]),
    Route("/ui/npy/{root}/{path:path}", lazy("assets.npy"), methods=["GET"]),
    Route("/ui/file/{root}/{path:path}", lazy("assets.download"), methods=["GET"]),
    Route("/ui/raw/{root}/{path:path}", lazy("assets.raw"), methods=["GET"]),
    Route("/login", lazy("login.login_page"), methods=["GET"]),
    Route("/login", lazy("login.login"), methods=["POST"]),
    Route("/logout", lazy("login.logout"), methods=["POST"]),
    Route("/static/{name}", lazy("assets.static"), methods=["GET"]),
]


def install(app: FastAPI) -> None:
    """Serve the page from ``app`` (after caterva.service.auth.install: it reads app.state.auth)."""
    app.state.web_secret = secrets.token_bytes(32)  # the CSRF tokens' key (guard.py)
    app.router.routes.extend(ROUTES)
