"""httpx, where it carries a client's requests: every ``AsyncClient``'s, and a ``Client``'s
given a transport (tests) or behind a proxy the environment names (client/sync.py). What is
asked, how answers decode and how failures map are the same as on client/lean.py's requests:
client/calls.py, client/auth.py and client/transport.py."""

from __future__ import annotations

from typing import Any

import httpx

from caterva.client.auth import END, Credentials, step
from caterva.client.calls import Call
from caterva.client.transport import TIMEOUT, Timeout


def timeout_of(timeout: Timeout) -> httpx.Timeout:
    return httpx.Timeout(timeout.read, connect=timeout.connect)


def make(cls: type, url: str, options: dict[str, Any], transport: Any) -> Any:
    """An httpx ``cls`` (Client, AsyncClient) for the subscriber at ``url``, with the
    ``options`` of client/auth.py's connection_options."""
    credentials = options.get("auth")
    return cls(
        base_url=url,
        timeout=timeout_of(TIMEOUT),
        transport=transport,
        verify=options["verify"],
        auth=Auth(credentials) if credentials is not None else None,
    )


def args(call: Call) -> dict[str, Any]:
    """httpx's keyword arguments for ``call``."""
    args: dict[str, Any] = {"params": call.params or None, "json": call.json}
    if not call.signed:
        args["auth"] = None
    if call.timeout is not None:
        args["timeout"] = timeout_of(call.timeout)
    return args


class Auth(httpx.Auth):
    """``Credentials``' flow, driven by httpx: only the bodies it needs are read (a login's
    answer, a 401), never a download's stream."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def _request(self, request: httpx.Request, call: Call | None) -> httpx.Request:
        if call is not None:  # a login
            return httpx.Request(call.method, self.credentials.url + call.path, json=call.json)
        if (value := self.credentials.header()) is not None:
            request.headers["Authorization"] = value
        return request

    def sync_auth_flow(self, request: httpx.Request):
        flow, response = self.credentials.flow(), None
        while (call := step(flow, response)) is not END:
            response = yield self._request(request, call)
            if call is not None or self.credentials.renews(response):
                response.read()

    async def async_auth_flow(self, request: httpx.Request):
        flow, response = self.credentials.flow(), None
        while (call := step(flow, response)) is not END:
            response = yield self._request(request, call)
            if call is not None or self.credentials.renews(response):
                await response.aread()
