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

import secrets

from fastapi import FastAPI
from starlette.routing import Route

from caterva.subscriber.web import assets, live, login, pages

ROUTES = [
    Route("/", pages.roots, methods=["GET"]),
    Route("/roots/{root}", pages.root, methods=["GET"]),
    Route("/roots/{root}/{path:path}", pages.dataset, methods=["GET"]),
    Route("/ui/follow", pages.follow, methods=["POST"]),
    Route("/ui/events", live.events, methods=["GET"]),
    Route("/ui/png/{root}/{path:path}", assets.png, methods=["GET"]),
    Route("/ui/npy/{root}/{path:path}", assets.npy, methods=["GET"]),
    Route("/ui/file/{root}/{path:path}", assets.download, methods=["GET"]),
    Route("/ui/raw/{root}/{path:path}", assets.raw, methods=["GET"]),
    Route("/login", login.login_page, methods=["GET"]),
    Route("/login", login.login, methods=["POST"]),
    Route("/logout", login.logout, methods=["POST"]),
    Route("/static/{name}", assets.static, methods=["GET"]),
]


def install(app: FastAPI) -> None:
    """Serve the page from ``app`` (after caterva.service.auth.install: it reads app.state.auth)."""
    app.state.web_secret = secrets.token_bytes(32)  # the CSRF tokens' key (guard.py)
    app.router.routes.extend(ROUTES)
