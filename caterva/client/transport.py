"""The client's boundary with httpx: the subscriber's URL, timeouts, TLS verification, and the
one place httpx errors and error answers become caterva errors.

    mapped()    httpx exceptions -> caterva errors, ``raise ... from exc``
    check()     a 4xx/5xx answer -> the caterva error its JSON body names (errors.from_response)

Every request of ``Client`` and ``AsyncClient`` goes through both (client/sync.py, client/aio.py).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from caterva.config import setting
from caterva.errors import BadRequest, ProtocolError, Unavailable, from_response

# Reads may wait on the subscriber fetching chunks from a far source: be patient with reads,
# quick to say the subscriber itself is not there.
TIMEOUT = httpx.Timeout(120.0, connect=5.0)
# The events stream is idle for as long as nothing changes.
STREAM_TIMEOUT = httpx.Timeout(None, connect=5.0)


def base_url(url: str | None) -> str:
    """The subscriber URL to talk to: the argument, else setting("sub") (env CATERVA_SUB)."""
    chosen = str(setting("sub", url)).strip().rstrip("/")
    try:
        parsed = httpx.URL(chosen)
    except httpx.InvalidURL as exc:
        raise BadRequest(f"invalid subscriber URL {chosen!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadRequest(f"invalid subscriber URL {chosen!r}: use http://HOST:PORT")
    return chosen


def verify_option(ca_file: str | os.PathLike | None = None) -> ssl.SSLContext | bool:
    """httpx's ``verify=``: the system's CAs, or only the CA file given (env CATERVA_CA_FILE)."""
    path = str(setting("ca_file", os.fspath(ca_file) if ca_file is not None else None)).strip()
    if not path:
        return True
    try:
        return ssl.create_default_context(cafile=os.path.expanduser(path))
    except (OSError, ssl.SSLError) as exc:
        raise BadRequest(f"cannot use CA file {path}: {exc}") from exc


@contextmanager
def mapped(url: str) -> Iterator[None]:
    """The one place httpx errors become caterva errors.

    Works around ``await`` too: a plain context manager sees the exception either way.
    """
    try:
        yield
    except httpx.ConnectError as exc:
        if (tls := _tls_error(exc)) is not None:
            raise tls from exc
        raise Unavailable(f"cannot reach the subscriber at {url}", unreachable=url) from exc
    except httpx.ConnectTimeout as exc:
        raise Unavailable(f"cannot reach the subscriber at {url}", unreachable=url) from exc
    except httpx.UnsupportedProtocol as exc:
        raise BadRequest(f"invalid subscriber URL {url!r}: use http://HOST:PORT") from exc
    except httpx.TimeoutException as exc:
        raise Unavailable(f"the subscriber at {url} did not answer in time") from exc
    except httpx.TransportError as exc:  # reset, closed mid-stream, protocol garbage
        raise Unavailable(f"lost the connection to the subscriber at {url}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise ProtocolError(f"bad answer from the subscriber at {url}: {exc}") from exc


def _tls_error(exc: BaseException) -> Unavailable | None:
    """A clear error for a failed TLS handshake (httpx only says "ConnectError")."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return Unavailable(
            f"cannot verify the TLS certificate of {exc.request.url.host} "
            f"({cause.verify_message}): give the CA that signed it with --ca-file "
            "(env CATERVA_CA_FILE)"
        )
    if isinstance(cause, ssl.SSLError):
        return Unavailable(
            f"TLS handshake with {exc.request.url.host} failed ({cause.reason}): "
            "is it an https:// server?"
        )
    return None


def check(response: httpx.Response) -> httpx.Response:
    """Raise the caterva error of a 4xx/5xx response; the body must have been read."""
    if response.status_code >= 400:
        raise from_response(response.status_code, response.content)
    return response
