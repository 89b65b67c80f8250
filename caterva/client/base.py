"""What ``Client`` and ``AsyncClient`` are built from, with no I/O (httpx's ``BaseClient``
habit): the subscriber's URL, how selections are read, credentials and TLS, the decoding
threads, and the events stream's state. Each subclass makes what carries its requests."""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import urlsplit

from caterva.client.auth import Credentials, connection_options
from caterva.client.calls import Call
from caterva.client.decoders import Decoders
from caterva.client.transport import base_url
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

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        email: str | None = None,
        password: str | None = None,
        ca_file: str | os.PathLike | None = None,
        selections: Selections = "chunks",
        transport: Any = None,
    ) -> None:
        self.url = base_url(url)
        self.local = is_loopback(urlsplit(self.url).hostname)  # a subscriber on this machine
        self.selections = check_selections(selections)
        self._options = connection_options(
            self.url, token=token, email=email, password=password, ca_file=ca_file
        )
        self._auth: Credentials | None = self._options.get("auth")
        self._http: Any = None  # the httpx client carrying the requests, if one does
        self._connect(transport)
        self._decoders = Decoders()

    def _connect(self, transport: Any) -> None:
        """Make what carries the requests (``transport``: an httpx one, for tests)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    def _signed_in(self, answer: dict[str, Any]) -> dict[str, Any]:
        """After ``login``: later requests carry the token it answered with."""
        self._auth = Credentials(self.url, answer["token"])
        if self._http is not None:
            from caterva.client import viahttpx

            self._http.auth = viahttpx.Auth(self._auth)
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
