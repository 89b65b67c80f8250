"""What ``Client`` and ``AsyncClient`` are built from, with no I/O (httpx's ``BaseClient``
habit): the subscriber's URL, how selections are read, credentials and TLS, the decoding
threads, and the events stream's state. Each subclass names its httpx client class."""

from __future__ import annotations

import os
from typing import Any, Literal

import httpx

from caterva.client.auth import Credentials, connection_options
from caterva.client.calls import Call
from caterva.client.decoders import Decoders
from caterva.client.transport import TIMEOUT, base_url
from caterva.config import is_loopback
from caterva.errors import BadRequest

#: how a client reads selections: see ``Client``
Selections = Literal["chunks", "npy"]


def check_selections(how: str) -> Selections:
    if how not in ("chunks", "npy"):
        raise BadRequest(f"selections={how!r}: use 'chunks' or 'npy'")
    return how  # type: ignore[return-value]


class ClientBase:
    """See ``Client`` for the options."""

    _http_class: type[httpx.Client] | type[httpx.AsyncClient]

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        email: str | None = None,
        password: str | None = None,
        ca_file: str | os.PathLike | None = None,
        selections: Selections = "chunks",
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = base_url(url)
        self.local = is_loopback(httpx.URL(self.url).host)  # a subscriber on this machine
        self.selections = check_selections(selections)
        options = connection_options(
            self.url, token=token, email=email, password=password, ca_file=ca_file
        )
        if transport is None:
            transport = self._own_transport(options["verify"])
        self._http: Any = self._http_class(
            base_url=self.url, timeout=TIMEOUT, transport=transport, **options
        )
        self._decoders = Decoders()

    @staticmethod
    def _own_transport(verify: Any) -> Any:
        """The transport of this kind of client (None: httpx's)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    def _signed_in(self, answer: dict[str, Any]) -> dict[str, Any]:
        """After ``login``: later requests carry the token it answered with."""
        self._http.auth = Credentials(self.url, answer["token"])
        return answer


class EventsBase:
    """An events request of ``client``: its answer is opened once, into ``_open`` (an exit
    stack of the subclass's kind), then read line by line."""

    _stack_class: Any  # contextlib.ExitStack or AsyncExitStack

    def __init__(self, client: ClientBase, call: Call) -> None:
        self._client, self._call = client, call
        self._open = self._stack_class()
        self._lines: Any = None
        self._closed = False
