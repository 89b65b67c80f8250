"""The client's boundary with HTTP: the subscriber's URL, timeouts, TLS verification, and the
one place transport errors and error answers become caterva errors.

    mapped()    a failure on the way (client/lean.py's ``Failure``, or httpx's exceptions
                where httpx carries the requests) -> caterva errors, ``raise ... from exc``
    check()     a 4xx/5xx answer -> the caterva error its JSON body names (errors.from_response)

Every request of ``Client`` and ``AsyncClient`` goes through both (client/sync.py, client/aio.py).
Nothing here imports httpx: a ``Client`` without it (the CLI) never loads it (~25 ms).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from caterva.config import setting
from caterva.errors import BadRequest, CatervaError, ProtocolError, Unavailable, from_response

if TYPE_CHECKING:
    import ssl  # imported for https only: a plain-http command spares it


@dataclass(frozen=True)
class Timeout:
    """Seconds to connect, and to wait for each read or write (None: for ever)."""

    connect: float | None
    read: float | None


# Reads may wait on the subscriber fetching chunks from a far source: be patient with reads,
# quick to say the subscriber itself is not there.
TIMEOUT = Timeout(connect=5.0, read=120.0)
# The events stream is idle for as long as nothing changes.
STREAM_TIMEOUT = Timeout(connect=5.0, read=None)


class Failure(Exception):
    """What went wrong on the way to an answer, as ``kind``: "connect" (no connection, or no
    TLS session), "connect-timeout", "read-timeout", "broken" (the connection failed or was
    closed mid-answer, or sent bytes that are not an HTTP/1.1 answer), "scheme"; httpx's
    other errors map to "protocol" (``kind_of``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def base_url(url: str | None) -> str:
    """The subscriber URL to talk to: the argument, else setting("sub") (env CATERVA_SUB)."""
    chosen = str(setting("sub", url)).strip().rstrip("/")
    try:
        parsed = urlsplit(chosen)
        parsed.port  # noqa: B018 -- a port out of range or not a number raises
    except ValueError as exc:
        raise BadRequest(f"invalid subscriber URL {chosen!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BadRequest(f"invalid subscriber URL {chosen!r}: use http://HOST:PORT")
    if parsed.query or parsed.fragment or any(c.isspace() for c in chosen):
        raise BadRequest(f"invalid subscriber URL {chosen!r}: use http://HOST:PORT")
    return chosen


def verify_option(ca_file: str | os.PathLike | None = None) -> ssl.SSLContext | bool:
    """TLS verification: the system's CAs (True), or only the CA file given (env
    CATERVA_CA_FILE)."""
    path = str(setting("ca_file", os.fspath(ca_file) if ca_file is not None else None)).strip()
    if not path:
        return True
    import ssl

    try:
        return ssl.create_default_context(cafile=os.path.expanduser(path))
    except (OSError, ssl.SSLError) as exc:
        raise BadRequest(f"cannot use CA file {path}: {exc}") from exc


@contextmanager
def mapped(url: str) -> Iterator[None]:
    """The one place failures on the way become caterva errors.

    Works around ``await`` too: a plain context manager sees the exception either way.
    """
    try:
        yield
    except Exception as exc:
        error = _error_of(exc, url)
        if error is None:
            raise
        raise error from exc


def _error_of(exc: Exception, url: str) -> CatervaError | None:
    kind = kind_of(exc)
    if kind == "connect":
        if (tls := _tls_error(exc, url)) is not None:
            return tls
        return Unavailable(f"cannot reach the subscriber at {url}", unreachable=url)
    if kind == "connect-timeout":
        return Unavailable(f"cannot reach the subscriber at {url}", unreachable=url)
    if kind == "scheme":
        return BadRequest(f"invalid subscriber URL {url!r}: use http://HOST:PORT")
    if kind == "read-timeout":
        return Unavailable(f"the subscriber at {url} did not answer in time")
    if kind == "broken":  # reset, closed mid-stream, protocol garbage
        return Unavailable(f"lost the connection to the subscriber at {url}: {exc}")
    if kind == "protocol":
        return ProtocolError(f"bad answer from the subscriber at {url}: {exc}")
    return None


def cut_short(exc: Exception) -> bool:
    """Whether ``exc`` is an answer's body cut short (the connection failed or closed)."""
    return kind_of(exc) == "broken"


def kind_of(exc: BaseException | None) -> str | None:
    """``exc`` as a Failure kind; None for what is not a failure on the way."""
    if isinstance(exc, Failure):
        return exc.kind
    httpx: Any = sys.modules.get("httpx")  # none of its errors without it
    if httpx is None or not isinstance(exc, httpx.HTTPError):
        return None
    for cls, kind in (
        (httpx.ConnectError, "connect"),
        (httpx.ConnectTimeout, "connect-timeout"),
        (httpx.UnsupportedProtocol, "scheme"),
        (httpx.TimeoutException, "read-timeout"),
        (httpx.TransportError, "broken"),
    ):
        if isinstance(exc, cls):
            return kind
    return "protocol"


def _tls_error(exc: BaseException, url: str) -> Unavailable | None:
    """A clear error for a failed TLS handshake (the failure only says "connect")."""
    ssl: Any = sys.modules.get("ssl")  # no TLS error without it
    if ssl is None:
        return None
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    host = urlsplit(url).hostname
    if isinstance(cause, ssl.SSLCertVerificationError):
        return Unavailable(
            f"cannot verify the TLS certificate of {host} "
            f"({cause.verify_message}): give the CA that signed it with --ca-file "
            "(env CATERVA_CA_FILE)"
        )
    if isinstance(cause, ssl.SSLError):
        return Unavailable(
            f"TLS handshake with {host} failed ({cause.reason}): is it an https:// server?"
        )
    return None


def check(response: Any) -> Any:
    """Raise the caterva error of a 4xx/5xx response (an httpx one, or client/lean.py's
    ``Answer``); the body must have been read."""
    if response.status_code >= 400:
        raise from_response(response.status_code, response.content)
    return response
