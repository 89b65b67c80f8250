"""Who may call a caterva HTTP service, checked in one place per service.

    subscriber with --auth   every route but PUBLIC needs a login token (401); a route with a
                             {root} needs a grant on that root (403); listings show only
                             granted roots; what sums every root (/v1/stats, /v1/status,
                             /metrics) needs a grant on each followed root. Grants are read
                             from the users database on every request. POST /v1/login trades
                             email+password for a token.
    --require-token          (publisher, or any service) every route but PUBLIC needs one of
                             the configured service tokens (401)

Both are deny by default: a route added later is protected without anyone remembering to.
The subscriber check is an app-wide dependency (it sees the matched route's ``root`` path
parameter, not a parsed string); the service-token check is ASGI middleware. No route here or
anywhere changes users or grants: only the admin CLI writes the users database.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from caterva.errors import BadCredentials, BadRequest, Forbidden, Unauthorized
from caterva.protocol import rest
from caterva.service import http
from caterva.service.http import also_answer, body_doc, json_body, limit_bodies, responses
from caterva.tokens import Claims, Signer, load_secret
from caterva.users import Users

PUBLIC = frozenset({rest.HEALTH, rest.LOGIN, *http.DOCS})
# grants checked in the route
GRANTED = frozenset({f"{rest.API}/stats", f"{rest.API}/events", f"{rest.API}/status", "/metrics"})


def bearer(headers: Any) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, if there is one."""
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class Auth:
    """A subscriber's accounts: tokens in, user and grants out."""

    def __init__(self, users: Users, signer: Signer, ttl: float) -> None:
        self.users = users
        self.signer = signer
        self.ttl = ttl

    @classmethod
    def open(cls, users: Path, secret: Path, ttl: float, clock=None) -> Auth:
        kwargs = {"clock": clock} if clock else {}
        return cls(Users.open(users, readonly=True), Signer(load_secret(secret), **kwargs), ttl)

    def close(self) -> None:
        self.users.close()

    def login(self, email: str, password: str) -> tuple[str, Claims]:
        user = self.users.verify(email, password)
        if user is None:
            raise BadCredentials("wrong email or password")
        return self.signer.issue(user, self.ttl)

    def roots(self, user: str) -> frozenset[str]:
        """What ``user`` may read now; a user removed since login is logged out."""
        roots = self.users.roots_of(user)
        if roots is None:
            raise Unauthorized(f"user {user} no longer exists")
        return roots

    def authenticate(self, request: Request) -> str:
        token = bearer(request.headers)
        if token is None:
            raise Unauthorized("this subscriber requires login")
        user = self.signer.verify(token).user
        self.roots(user)  # still an account
        return user

    def require(self, user: str, root: str) -> None:
        # 403 whether or not the root exists: a user learns nothing about roots not theirs
        if root not in self.roots(user):
            raise Forbidden(f"you ({user}) have no grant on root {root!r}", root=root)


def _auth(request: Request) -> Auth | None:
    return getattr(request.app.state, "auth", None)


async def authorize(request: Request) -> None:
    """App-wide dependency of the subscriber: authenticated, and granted the route's root."""
    auth = _auth(request)
    if auth is None:
        return
    route = request.scope.get("route")
    if getattr(route, "path", None) in PUBLIC:
        return
    user = auth.authenticate(request)
    request.state.user = user
    root = request.path_params.get("root")
    if root is not None:
        auth.require(user, root)


def may_read(request: Request, root: str) -> bool:
    """For handlers that list or stream many roots: may this request's user read ``root``?
    Asked per item, so a revoke also ends what an open stream shows."""
    auth = _auth(request)
    if auth is None:
        return True
    try:
        return root in auth.roots(request.state.user)
    except Unauthorized:  # removed since the stream began
        return False


def require_grant(request: Request, root: str) -> None:
    """For a root named outside the path (a query parameter): 403 unless granted."""
    auth = _auth(request)
    if auth is not None:
        auth.require(request.state.user, root)


def require_every(request: Request, roots: Iterable[str]) -> None:
    """For what covers many roots at once (the cache's counters): 403 unless this request's
    user is granted every one of ``roots``. There is no admin over HTTP (only the admin CLI
    writes accounts), so a user who could read each root alone may read what sums them."""
    auth = _auth(request)
    if auth is not None and not set(roots) <= auth.roots(request.state.user):
        # which roots is not said: a user learns nothing about roots not theirs
        raise Forbidden("this covers every followed root: it needs a grant on each of them")


def readable(request: Request, roots) -> list[str]:
    """The names in ``roots`` this request's user may read (all of them without auth)."""
    auth = _auth(request)
    if auth is None:
        return list(roots)
    granted = auth.roots(request.state.user)
    return [r for r in roots if r in granted]


# --- POST /v1/login ---------------------------------------------------------------------------

router = APIRouter()


class Login(BaseModel):
    email: str
    password: str


class Token(BaseModel):
    token: str
    user: str
    issued: float
    expiry: float


@router.post(
    rest.LOGIN,
    summary="Trade an email and password for a token",
    description="Send the token back as `Authorization: Bearer TOKEN`. Accounts and grants "
    "are managed only with `caterva user ...` on the subscriber's machine.",
    response_model=Token,
    responses=responses(400, 401, 413),
    openapi_extra=body_doc(Login),
)
async def login(body: Annotated[Login, Depends(json_body(Login))], request: Request) -> Token:
    auth = _auth(request)
    if auth is None:
        raise BadRequest("this subscriber does not require login")
    # argon2 is slow on purpose: off the event loop
    token, claims = await asyncio.to_thread(auth.login, body.email, body.password)
    return Token(token=token, user=claims.user, issued=claims.issued, expiry=claims.expiry)


def install(app: FastAPI, security, statedir: Path) -> None:
    """A subscriber app built with ``dependencies=[Depends(authorize)]``: accounts when
    ``security.auth`` (caterva.service.security.Security), else service tokens when required."""
    accounts = security.accounts(statedir)
    if accounts and security.require_tokens:
        raise BadRequest("use either --auth (accounts) or --require-token, not both")
    app.state.auth = Auth.open(*accounts, ttl=security.token_ttl) if accounts else None
    if accounts:
        also_answer(app, 401, lambda path: path not in PUBLIC)
        # a grant on the root named in the path, or on every followed root (stats, events)
        also_answer(app, 403, lambda path: "{root}" in path or path in GRANTED)
    limit_bodies(app, security.max_body)
    app.include_router(router)
    require_tokens(app, security.require_tokens)


# --- service tokens ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RequireToken:
    """ASGI middleware: every HTTP request but PUBLIC carries one of ``tokens``."""

    app: ASGIApp
    tokens: tuple[str, ...]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = bearer(headers)
        # compare with every token, no early exit: timing tells nothing about which matched
        ok = token is not None and sum(
            hmac.compare_digest(token.encode(), t.encode()) for t in self.tokens
        )
        if ok:
            return await self.app(scope, receive, send)
        error = Unauthorized("this service requires a token" if token is None else "invalid token")
        response = JSONResponse(
            error.to_payload(), status_code=error.status, headers={"WWW-Authenticate": "Bearer"}
        )
        await response(scope, receive, send)


def require_tokens(app: FastAPI, tokens: tuple[str, ...]) -> None:
    if tokens:
        app.add_middleware(RequireToken, tokens=tokens)
        also_answer(app, 401, lambda path: path not in PUBLIC)
