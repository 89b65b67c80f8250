"""What every caterva HTTP service shares: errors as JSON with stable codes, never HTML and
never a 500 for bad input."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from caterva.errors import BadRequest, CatervaError, NotFound

log = logging.getLogger("caterva.http")


def error_response(exc: CatervaError) -> JSONResponse:
    return JSONResponse(exc.to_payload(), status_code=exc.status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CatervaError)
    async def caterva_error(request: Request, exc: CatervaError) -> JSONResponse:
        if exc.status >= 500 and exc.status != 503:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(BadRequest(f"invalid request: {where}: {first.get('msg', '')}"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(NotFound(f"no such endpoint: {request.url.path}"))
        error = CatervaError(str(exc.detail))
        error.code, error.status = f"http_{exc.status_code}", exc.status_code
        return error_response(error)
