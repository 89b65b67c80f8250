"""Pages from templates, and what every page handler shares: its errors as pages (or a login
redirect), the security headers, fragments for live updates, posted forms.

Templates are Jinja2 with autoescaping on for everything: a name, path or value reaches the
HTML as text, whatever it holds. A page template puts what live updates refresh in a block
named ``live``; a request with the header ``X-Caterva-Fragment: live`` (the page's own script)
gets that block alone.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from caterva.errors import BadRequest, CatervaError, Unauthorized
from caterva.service.http import read_body
from caterva.subscriber.web import guard

Handler = Callable[[Request], Awaitable[Response]]
FRAGMENT = "x-caterva-fragment"
FORM_FIELDS = 16  # fields a posted form may have


def _urlpath(path: str) -> str:
    """A dataset path in a URL: each segment quoted, the slashes kept."""
    return quote(path, safe="/")


ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters["urlpath"] = _urlpath
ENV.filters["query"] = lambda params: urlencode({k: v for k, v in params.items() if v})


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    auth = guard.auth_of(request)
    context = {
        "request": request,
        "auth": auth is not None,
        "user": getattr(request.state, "user", None) if auth else None,
        "csrf": guard.csrf_token(request),
        **context,
    }
    template = ENV.get_template(name)
    if request.headers.get(FRAGMENT) == "live" and "live" in template.blocks:
        html = "".join(template.blocks["live"](template.new_context(context)))
    else:
        html = template.render(context)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def login_redirect(request: Request) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": here}), status_code=303)


def page(handler: Handler) -> Handler:
    """A page handler whose caterva errors become pages with their status (a missing login:
    the login page, for a browser's GET), every answer with the security headers."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        try:
            response = await handler(request)
        except Unauthorized as exc:
            if request.method == "GET" and FRAGMENT not in request.headers:
                response = login_redirect(request)
            else:
                response = _error(request, exc)
        except CatervaError as exc:
            response = _error(request, exc)
        if "content-security-policy" not in response.headers:
            guard.secure(response)
        return response

    return run


def _error(request: Request, exc: CatervaError) -> Response:
    # a root's page that is not followed offers to follow it
    root = request.path_params.get("root") if exc.code == "not_followed" else None
    return render(request, "error.html", exc.status, error=exc, root=root)


async def form(request: Request) -> dict[str, str]:
    """A posted urlencoded form (bounded by the service's --max-body)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise BadRequest("expected a form (application/x-www-form-urlencoded)")
    body = await read_body(request)
    try:
        pairs = parse_qsl(body.decode(), max_num_fields=FORM_FIELDS, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("malformed form") from None
    return dict(pairs)


def local(target: str) -> str:
    """``target`` if it is a path on this site, else "/": a login's ``next`` sends nowhere else."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"
