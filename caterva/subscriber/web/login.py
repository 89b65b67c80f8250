"""The login page (with --auth): the same accounts and tokens as ``POST /v1/login``, the token
kept in an HttpOnly, SameSite=Strict cookie (guard.py)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from caterva.errors import BadCredentials
from caterva.subscriber.web import guard
from caterva.subscriber.web.render import form, local, page, render


@page
async def login_page(request: Request) -> Response:
    if guard.auth_of(request) is None:  # nothing to log in to
        return RedirectResponse("/", status_code=303)
    return render(request, "login.html", next=local(request.query_params.get("next", "/")))


@page
async def login(request: Request) -> Response:
    auth = guard.auth_of(request)
    if auth is None:
        return RedirectResponse("/", status_code=303)
    fields = await form(request)
    guard.check_form(request, fields)
    target = local(fields.get("next", "/"))
    email, password = fields.get("email", ""), fields.get("password", "")
    try:
        # argon2 is slow on purpose: off the event loop
        token, claims = await asyncio.to_thread(auth.login, email, password)
    except BadCredentials as exc:
        return render(request, "login.html", exc.status, next=target, error=exc, email=email)
    response = RedirectResponse(target, status_code=303)
    guard.log_in(response, request, token, claims.expiry)
    return response


@page
async def logout(request: Request) -> Response:
    fields = await form(request)
    guard.check_form(request, fields)
    response = RedirectResponse("/login" if guard.auth_of(request) else "/", status_code=303)
    guard.log_out(response, request)
    return response
