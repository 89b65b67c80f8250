"""Every error a source API answers is caterva JSON: ``{"error": {"code", "message"}}``.

    CatervaError             -> its own status and code
    request validation       -> 400 bad_request
    unknown route / method   -> 404 not_found / 405 method_not_allowed
    bad or unsatisfiable Range on a file -> 400 / 416 (caterva.service.ranges)
    anything unexpected      -> 500 internal_error, with no detail (it could name server paths)

Every caterva HTTP service (publisher, subscriber) installs these: one place for the rule.

Request bodies are read by ``json_body`` only, never by FastAPI itself: FastAPI reads and
parses a declared body before any dependency runs, so a login check would come after a
stranger's 40 MB had been parsed. ``json_body`` runs after the app's dependencies and stops
at ``max_body`` bytes (``limit_bodies``): 413 body_too_large, by Content-Length at once.

``install`` also serves the OpenAPI pages (``/docs``, ``/redoc``) with their scripts from the
service itself, not a CDN: caterva runs on LANs, often without internet.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from caterva import config
from caterva.errors import BadRequest, BodyTooLarge, CatervaError
from caterva.protocol import rest

log = logging.getLogger("caterva.http")

# the files of Swagger UI and ReDoc that fastapi-offline ships, served under /docs/
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
# what anyone may read, even where tokens are required: the API's description
DOCS = frozenset(
    {
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        *(f"/docs/{name}" for name in ASSETS),
    }
)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


B = TypeVar("B", bound=BaseModel)


def limit_bodies(app: FastAPI, max_body: int) -> None:
    """Refuse request bodies of more than ``max_body`` bytes (json_body)."""
    app.state.max_body = max_body


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it is known to pass the app's limit."""
    most = request.app.state.max_body
    too_big = BodyTooLarge(f"the request body is larger than {most:,} bytes (--max-body)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > most:
        raise too_big
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > most:
            raise too_big
    return bytes(body)


def json_body(model: type[B]) -> Callable[[Request], Awaitable[B]]:
    """A dependency that reads (read_body) and parses the body as ``model``."""

    async def parse(request: Request) -> B:
        body = await read_body(request)
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(part) for part in first.get("loc", ()))
            raise BadRequest(
                f"invalid body{' ' + where if where else ''}: {first.get('msg', 'malformed')}"
            ) from None

    return parse


def body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """The ``openapi_extra`` that documents a body read by json_body (FastAPI cannot see it)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline(model)}},
        }
    }


def _inline(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of ``model`` standing alone: no refs into pydantic's $defs."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return inline(schema)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def _caterva_error(request: Request, exc: CatervaError) -> JSONResponse:
    return JSONResponse(exc.to_payload(), status_code=exc.status)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("path", "query"))
    message = f"invalid {where or 'request'}: {first.get('msg', 'malformed')}"
    return JSONResponse(error_body("bad_request", message), status_code=400)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    code = code or ("bad_request" if exc.status_code < 500 else "internal_error")
    message = exc.detail if isinstance(exc.detail, str) else code
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # Starlette names the methods of the first route that matched
        headers["Allow"] = ", ".join(_methods_at(request))
    return JSONResponse(error_body(code, message), exc.status_code, headers=headers)


def _methods_at(request: Request) -> list[str]:
    """Every method some route answers at this request's path (asked of the routes
    themselves: FastAPI may nest an included router as one route)."""
    return [
        method
        for method in ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.router.routes
        )
    ]


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s", request.url.path, exc_info=exc)
    return JSONResponse(error_body("internal_error", "internal error"), status_code=500)


def install(app: FastAPI) -> None:
    limit_bodies(app, config.parse_size(config.DEFAULTS["max_body"]))  # services set theirs
    app.add_exception_handler(CatervaError, _caterva_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    _local_docs(app)
    _document(app)


def _local_docs(app: FastAPI) -> None:
    """Replace FastAPI's /docs and /redoc (their scripts come from a CDN) with pages whose
    every script, style and icon this service serves."""
    from importlib.resources import files

    static = files("fastapi_offline") / "static"
    app.router.routes[:] = [
        r for r in app.router.routes if getattr(r, "path", None) not in ("/docs", "/redoc")
    ]

    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + app.swagger_ui_oauth2_redirect_url,
            swagger_js_url=f"{root}/docs/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # its badge is an image from the web
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=root + app.openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}/docs/redoc.standalone.js",
            redoc_favicon_url=f"{root}/docs/favicon.png",
            with_google_fonts=False,
        )

    def asset(name: str, media_type: str):
        async def serve(request: Request) -> FileResponse:
            return FileResponse(static / name, media_type=media_type)

        return serve

    app.add_route("/docs", swagger, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
    for name, media_type in ASSETS.items():
        app.add_route(f"/docs/{name}", asset(name, media_type), include_in_schema=False)


JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}
BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
BATCH = {rest.BATCH_TYPE: BYTES["application/octet-stream"]}

# What each error status means here, with the stable codes it carries (caterva.errors).
ERRORS = {
    400: "Malformed request (`bad_request`, `invalid_name`, `bad_selection`, `bad_cursor`): a "
    "name, path, pattern, cursor, parameter, Range or body that is not valid.",
    401: "Not logged in, or the token is missing, invalid or expired (`unauthorized`, "
    "`bad_credentials`, `token_expired`).",
    403: "The user has no grant on this root, or on every followed root (`forbidden`).",
    404: "Unknown root, dataset or chunk (`unknown_root`, `unknown_dataset`, "
    "`chunk_out_of_range`).",
    409: "The root is not followed (`not_followed`), the dataset changed while it was read "
    "(`dataset_changed`: read it again), or a root to pin does not fit the cache budget "
    "(`pin_too_large`).",
    413: "The request body is larger than the service accepts (`body_too_large`, `--max-body`).",
    416: "The Range asks for bytes the file does not have (`range_not_satisfiable`).",
    501: "Not something this service does for this request (`not_supported`; the message says "
    "what to do instead): a write of the Caterva2 API, a `/file` of a dataset it cannot frame "
    "(the client frames it), a handoff to another machine, a printout too large to render.",
    502: "A source answered wrongly (`protocol_error`, `digest_mismatch`, `untrusted_source`, "
    "`key_changed`, `source_refused`).",
    503: "Not now; retry (`unavailable`: the dataset is being rewritten; `source_offline`: no "
    "source of the root answers).",
}


def header(description: str, required: bool = True) -> dict[str, Any]:
    """The OpenAPI of a response header (a string)."""
    return {"description": description, "required": required, "schema": {"type": "string"}}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer: each a caterva JSON error."""
    out: dict[int | str, dict[str, Any]] = {s: _error_doc(s) for s in statuses}
    if 416 in out:
        out[416]["headers"] = {"Content-Range": header("`bytes */SIZE`: the file's size.")}
    return out


def _error_doc(status: int) -> dict[str, Any]:
    return {
        "description": ERRORS[status],
        "content": {"application/json": {"schema": _inline(ErrorBody)}},
    }


def also_answer(app: FastAPI, status: int, where: Callable[[str], bool]) -> None:
    """Document ``status`` on every route whose path ``where`` accepts: what an app-wide
    layer (a login check) answers, which no route declares."""
    if not hasattr(app.state, "layer_errors"):
        app.state.layer_errors = []
    app.state.layer_errors.append((status, where))


def _document(app: FastAPI) -> None:
    """FastAPI's OpenAPI, told what FastAPI cannot know: a request it cannot validate is 400
    bad_request here (json_body, _validation_error), never 422; and the statuses of app-wide
    layers (also_answer)."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = make()
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                answers = operation["responses"]
                if answers.pop("422", None) is not None:
                    answers.setdefault("400", _error_doc(400))
                for status, where in getattr(app.state, "layer_errors", ()):
                    if where(path):
                        answers.setdefault(str(status), _error_doc(status))
        defined = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            defined.pop(name, None)
        return schema

    app.openapi = openapi
