"""How a client proves who it is: ``Authorization: Bearer`` on every request, the login that
trades an email and password for a token (and again when it expires), and the options
(credentials, TLS verification) a client is made with. No I/O: the drivers send what ``flow``
asks (client/lean.py's requests in ``Client``, httpx's through client/viahttpx.py)."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

from caterva.client.calls import Call, Calls, json_of
from caterva.client.transport import check, verify_option
from caterva.errors import BadRequest, ProtocolError, TokenExpired, from_response

#: what ``flow`` yields: the login Call to make, or None for the request itself (signed with
#: the token then held); it is sent each answer, read whole when it is a login's or a 401
Flow = Generator[Call | None, Any, None]
END = object()  # what ``step`` returns once the flow has nothing more to send


def step(flow: Flow, response: Any) -> Any:
    """``flow``'s next step once sent ``response`` (None at the start): a login Call, None
    (the request itself), or END."""
    try:
        return flow.send(response)
    except StopIteration:
        return END


class Credentials:
    """A token given (or stored by ``caterva login``), or one traded for an email and password
    at the first request and again when it expires."""

    def __init__(
        self, url: str, token: str | None, email: str | None = None, password: str | None = None
    ) -> None:
        self.url, self.token, self.email, self.password = url, token, email, password

    def flow(self) -> Flow:
        if self.token is None and self.email is not None:
            self._took((yield self._login()))
        response = yield None
        if self.renews(response) and isinstance(from_response(401, response.content), TokenExpired):
            self._took((yield self._login()))
            yield None

    def renews(self, response: Any) -> bool:
        """Whether ``response``'s whole body is needed: a 401 to an email's login, which may
        say the token expired."""
        return response.status_code == 401 and self.email is not None

    def header(self) -> str | None:
        """The Authorization header's value, when there is a token."""
        return f"Bearer {self.token}" if self.token else None

    def _login(self) -> Call:
        return Calls.login(self.email, self.password)

    def _took(self, response: Any) -> None:
        token = json_of(check(response)).get("token")
        if not isinstance(token, str):
            raise ProtocolError("the subscriber sent a login answer without a token")
        self.token = token


def connection_options(
    url: str,
    *,
    token: str | None = None,
    email: str | None = None,
    password: str | None = None,
    ca_file: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """``auth`` (Credentials or None) and ``verify`` for a Client or AsyncClient of ``url``.

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
