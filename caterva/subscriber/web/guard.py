"""Who sees the page, and what protects it.

login     with --auth, the token POST /login gets (the same as POST /v1/login's) is kept
          in a cookie the page's script cannot read (HttpOnly) and the browser sends only
          from the page's own origin (SameSite=Strict); grants are those of the API
          (caterva.service.auth), read from the users database on every request
CSRF      a form that changes something (follow, unfollow, login, logout) must come from
          this origin (Origin, else Referer) and carry a token only this page can know:
          an HMAC of the login cookie (or of nothing, without --auth) under a secret made
          at start
headers   a Content-Security-Policy with no inline script or style and nothing from
          elsewhere, no framing, no MIME sniffing
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from caterva.errors import Forbidden, Unauthorized
from caterva.service.auth import Auth

COOKIE = "caterva_login"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
# a file served as itself (an image preview): never a document that could run anything
RAW_HEADERS = {**HEADERS, "Content-Security-Policy": "default-src 'none'; sandbox"}


def auth_of(request: Request) -> Auth | None:
    return getattr(request.app.state, "auth", None)


def user(request: Request) -> str | None:
    """The logged-in user (None without --auth); Unauthorized when there is none."""
    auth = auth_of(request)
    if auth is None:
        return None
    token = request.cookies.get(COOKIE)
    if not token:
        raise Unauthorized("log in to see this subscriber's roots")
    name = auth.signer.verify(token).user
    auth.roots(name)  # still an account
    request.state.user = name  # what caterva.service.auth's may_read and readable look at
    return name


def require(request: Request, root: str) -> None:
    """403 unless the user may read ``root``, as on the API."""
    auth = auth_of(request)
    if auth is not None:
        auth.require(request.state.user, root)


def secure_cookie(request: Request) -> bool:
    return request.url.scheme == "https"


def log_in(response: Response, request: Request, token: str, expiry: float) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=max(0, int(expiry - time.time())),
        path="/",
        httponly=True,
        samesite="strict",
        secure=secure_cookie(request),
    )


def log_out(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=secure_cookie(request)
    )


def csrf_token(request: Request) -> str:
    secret: bytes = request.app.state.web_secret
    session = request.cookies.get(COOKIE, "") if auth_of(request) else ""
    return hmac.new(secret, b"csrf." + session.encode(), hashlib.sha256).hexdigest()


def check_form(request: Request, form: dict[str, str]) -> None:
    """403 unless a posted form comes from this page: same origin, and its CSRF token."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = urlsplit(request.headers.get("referer", ""))
        origin = f"{referer.scheme}://{referer.netloc}" if referer.netloc else None
    here = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin != here:
        raise Forbidden("this form was not sent from this subscriber's page")
    if not hmac.compare_digest(form.get("csrf", ""), csrf_token(request)):
        raise Forbidden("this form is stale or forged: reload the page and try again")


def secure(response: Response, headers: dict[str, str] = HEADERS) -> Response:
    response.headers.update(headers)
    return response
