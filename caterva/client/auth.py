"""How a client proves who it is: ``Authorization: Bearer`` on every request, and the options
(credentials, TLS verification) its httpx client is made with."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import httpx

from caterva.client.calls import Calls, json_of
from caterva.client.transport import check, verify_option
from caterva.errors import BadRequest, ProtocolError, TokenExpired, from_response

Flow = Generator[tuple[httpx.Request, bool], httpx.Response, None]


class Credentials(httpx.Auth):
    """A token given (or stored by ``caterva login``), or one traded for an email and password
    at the first request and again when it expires.

    ``_flow`` is written once; the sync and async drivers below only read the bodies it
    needs (a login's answer, a 401), never a download's stream."""

    def __init__(
        self, url: str, token: str | None, email: str | None = None, password: str | None = None
    ) -> None:
        self.url, self.token, self.email, self.password = url, token, email, password

    def _flow(self, request: httpx.Request) -> Flow:
        """Yields each request to send and whether its whole answer is needed (a 401's always
        is: it says whether the token expired); is sent the response."""
        if self.token is None and self.email is not None:
            self._took((yield self._login(), True))
        response = yield self._sign(request), False
        if self._expired(response) and isinstance(
            from_response(401, response.content), TokenExpired
        ):
            self._took((yield self._login(), True))
            yield self._sign(request), False

    def _login(self) -> httpx.Request:
        call = Calls.login(self.email, self.password)
        return httpx.Request(call.method, self.url + call.path, json=call.json)

    def _took(self, response: httpx.Response) -> None:
        token = json_of(check(response)).get("token")
        if not isinstance(token, str):
            raise ProtocolError("the subscriber sent a login answer without a token")
        self.token = token

    def _sign(self, request: httpx.Request) -> httpx.Request:
        if self.token:
            request.headers["Authorization"] = f"Bearer {self.token}"
        return request

    def _expired(self, response: httpx.Response) -> bool:
        return response.status_code == 401 and self.email is not None

    def sync_auth_flow(self, request: httpx.Request):
        flow, response = self._flow(request), None
        while (step := _next(flow, response)) is not None:
            response = yield step[0]
            if step[1] or response.status_code == 401:
                response.read()

    async def async_auth_flow(self, request: httpx.Request):
        flow, response = self._flow(request), None
        while (step := _next(flow, response)) is not None:
            response = yield step[0]
            if step[1] or response.status_code == 401:
                await response.aread()


def _next(flow: Flow, response: httpx.Response | None) -> tuple[httpx.Request, bool] | None:
    try:
        return flow.send(response)  # type: ignore[arg-type]
    except StopIteration:
        return None


def connection_options(
    url: str,
    *,
    token: str | None = None,
    email: str | None = None,
    password: str | None = None,
    ca_file: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """``auth`` and ``verify`` for the httpx client of a Client or AsyncClient of ``url``.

    Without ``token`` or ``email``, the token ``caterva login`` stored for ``url`` is used.
    """
    if (email is None) != (password is None):
        raise BadRequest("give both email= and password= (or a token=)")
    if token is None and email is None:
        from caterva import credentials

        token = credentials.load(url)
    # plain http: no TLS, so no CA bundle to load (httpx loads one per client otherwise,
    # ~70 ms of every CLI command)
    verify = verify_option(ca_file) if url.startswith("https:") else False
    options: dict[str, Any] = {"verify": verify}
    if token is not None or email is not None:
        options["auth"] = Credentials(url, token, email, password)
    return options
