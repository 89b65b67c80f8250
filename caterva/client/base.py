"""What the sync and async clients share, with no I/O: which request each call makes, how a
response decodes, and how httpx errors become caterva errors (here, and only here).

    Call        one request: method, path, params, and the function that decodes its answer
    Decoders    a client's decoding threads; Frames: a Call's frames taken on them
    mapped()    httpx exceptions -> caterva errors, ``raise ... from exc``
    check()     a 4xx/5xx answer -> the caterva error its JSON body names
    connection_options()  credentials (Authorization header) and TLS verification, once

``Client`` (client/sync.py) and ``AsyncClient`` (client/aio.py) only send Calls and feed
bytes to the decoders below, so both behave the same by construction.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from caterva.client.transfer import Assembler, Batch, windows
from caterva.config import setting
from caterva.errors import (
    BadRequest,
    ProtocolError,
    TokenExpired,
    Unavailable,
    from_response,
)
from caterva.protocol import rest
from caterva.protocol.metadata import DatasetInfo, Manifest
from caterva.protocol.names import check_root, split_address

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

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
        return Unavailable(f"TLS handshake with {exc.request.url.host} failed ({cause.reason}): "
                           "is it an https:// server?")
    return None


def verify_option(ca_file: str | os.PathLike | None = None) -> ssl.SSLContext | bool:
    """httpx's ``verify=``: the system's CAs, or only the CA file given (env CATERVA_CA_FILE)."""
    path = str(setting("ca_file", os.fspath(ca_file) if ca_file is not None else None)).strip()
    if not path:
        return True
    try:
        return ssl.create_default_context(cafile=os.path.expanduser(path))
    except (OSError, ssl.SSLError) as exc:
        raise BadRequest(f"cannot use CA file {path}: {exc}") from exc


class Credentials(httpx.Auth):
    """``Authorization: Bearer`` on every request: a token given (or stored by ``caterva
    login``), or one traded for an email and password at the first request and again when
    it expires. One flow for both clients; only reading a response differs."""

    def __init__(self, login_url: str, token: str | None, email: str | None,
                 password: str | None) -> None:
        self.login_url, self.token, self.email, self.password = login_url, token, email, password

    def _login(self) -> httpx.Request:
        return httpx.Request("POST", self.login_url,
                             json={"email": self.email, "password": self.password})

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
        if self.token is None and self.email is not None:
            login = yield self._login()
            login.read()
            self._took(login)
        response = yield self._sign(request)
        if self._expired(response):
            response.read()
            if isinstance(from_response(401, response.content), TokenExpired):
                login = yield self._login()
                login.read()
                self._took(login)
                yield self._sign(request)

    async def async_auth_flow(self, request: httpx.Request):
        if self.token is None and self.email is not None:
            login = yield self._login()
            await login.aread()
            self._took(login)
        response = yield self._sign(request)
        if self._expired(response):
            await response.aread()
            if isinstance(from_response(401, response.content), TokenExpired):
                login = yield self._login()
                await login.aread()
                self._took(login)
                yield self._sign(request)


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
        options["auth"] = Credentials(f"{url}{rest.API}/login", token, email, password)
    return options


def check(response: httpx.Response) -> httpx.Response:
    """Raise the caterva error of a 4xx/5xx response; the body must have been read."""
    if response.status_code >= 400:
        raise from_response(response.status_code, response.content)
    return response


def json_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("the subscriber sent a body that is not JSON") from exc


@dataclass(frozen=True)
class RootInfo:
    """One root as the subscriber sees it (``Client.roots()``)."""

    name: str
    online: bool
    followed: bool
    datasets: int
    source: str | None = None
    origin: str | None = None
    hops: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    source_id: str | None = None  # pub_id of the source read from: the origin or a mirror

    @classmethod
    def from_dict(cls, body: Any) -> RootInfo:
        if not isinstance(body, dict) or not isinstance(body.get("root"), str):
            raise ProtocolError("the subscriber sent an invalid root entry")
        return cls(
            name=body["root"],
            online=bool(body.get("online")),
            followed=bool(body.get("followed")),
            datasets=int(body.get("datasets") or 0),
            source=body.get("source"),
            origin=body.get("origin"),
            hops=list(body.get("hops") or []),
            sources=list(body.get("sources") or []),
            source_id=body.get("source_id"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.name,
            "online": self.online,
            "followed": self.followed,
            "datasets": self.datasets,
            "source": self.source,
            "origin": self.origin,
            "hops": self.hops,
            "sources": self.sources,
            "source_id": self.source_id,
        }


@dataclass(frozen=True)
class Cached:
    """How much of a dataset the subscriber holds: chunks and their compressed bytes."""

    chunks: int
    bytes: int


def _roots(response: httpx.Response) -> list[RootInfo]:
    body = json_of(response)
    entries = body.get("roots") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise ProtocolError("the subscriber sent an invalid roots list")
    return [RootInfo.from_dict(e) for e in entries]


def _followed(response: httpx.Response) -> int:
    body = json_of(response)
    return int(body.get("datasets", 0)) if isinstance(body, dict) else 0


def _manifest(response: httpx.Response) -> list[DatasetInfo]:
    return sorted(Manifest.from_dict(json_of(response)).datasets, key=lambda d: d.path)


def _info(response: httpx.Response) -> tuple[DatasetInfo, Cached]:
    body = json_of(response)
    info = DatasetInfo.from_dict(body)
    cached = body.get("cached") or {}
    return info, Cached(int(cached.get("chunks", 0)), int(cached.get("bytes", 0)))


@dataclass(frozen=True)
class Call:
    """One request to the subscriber and how to decode its answer. With ``take`` (and no
    ``decode``) the answer is a batch of chunk frames: each is parsed as it arrives (not read
    whole, then copied again into chunks) and handed to ``take(index, digest, data)`` on a
    decoding thread, so chunks decompress while the next ones travel (see ``Frames``)."""

    method: str
    path: str
    decode: Callable[[httpx.Response], Any] | None
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None  # a JSON request body
    take: Callable[[int, str, bytes], None] | None = None
    batch: tuple[tuple[DatasetInfo, list[int]], ...] = ()  # the chunks a batch answer holds

    def frames(self) -> rest.BatchReader:
        """The reader of a batch answer: frames that are not the ones asked for, or bigger
        than their chunks can be, fail before their bytes are kept."""
        return rest.BatchReader(rest.expected_frames(self.batch))


class Decoders:
    """A client's threads taking chunk frames: one per core, as decompressing is CPU work done
    without the GIL (protocol/layout.py). Started by the first read that needs them, so a
    process that never reads chunks (the CLI) never pays for them."""

    def __init__(self) -> None:
        self._pool: Executor | None = None
        self._lock = threading.Lock()

    def frames(self, take: Callable[[int, str, bytes], None]) -> Frames:
        with self._lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(os.cpu_count() or 1,
                                                thread_name_prefix="caterva-decode")
        return Frames(self._pool, take)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


class Frames:
    """A Call's frames handed to its ``take`` on ``pool``'s threads as they arrive."""

    def __init__(self, pool: Executor, take: Callable[[int, str, bytes], None]) -> None:
        self.pool, self.take = pool, take
        self.pending: list[Future] = []

    def submit(self, frames: list[tuple[int, str, bytes]]) -> None:
        self.pending += [self.pool.submit(self.take, *frame) for frame in frames]

    def finish(self) -> None:
        """Wait for every frame to be taken; the first error is raised."""
        for job in self.pending:
            job.result()

    def cancel(self) -> None:
        for job in self.pending:
            job.cancel()


def _root_path(root: str, what: str) -> str:
    return f"{rest.API}/roots/{check_root(root)}/{what}"


def dataset_address(address: str) -> tuple[str, str]:
    """'root/dir/file.b2nd' -> (root, path); a bare root is an error here."""
    root, path = split_address(address)
    if path is None:
        raise BadRequest(f"{address!r} names a root, not a dataset: use ROOT/PATH")
    return root, path


class Calls:
    """The request behind each client method (no I/O)."""

    @staticmethod
    def roots() -> Call:
        return Call("GET", f"{rest.API}/roots", _roots)

    @staticmethod
    def follow(root: str) -> Call:
        return Call("PUT", _root_path(root, "follow"), _followed)

    @staticmethod
    def unfollow(root: str) -> Call:
        return Call("DELETE", _root_path(root, "follow"), lambda r: None)

    @staticmethod
    def manifest(root: str) -> Call:
        return Call("GET", _root_path(root, "manifest"), _manifest)

    @staticmethod
    def info(root: str, path: str) -> Call:
        return Call("GET", rest.info(check_root(root), path), _info)

    @staticmethod
    def data(root: str, path: str, sel: str, field_name: str | None, decode) -> Call:
        params = {"sel": sel}
        if field_name is not None:
            params["field"] = field_name
        return Call("GET", f"{_root_path(root, 'data')}/{quote(path, safe='/')}", decode, params)

    @staticmethod
    def chunks(root: str, info: DatasetInfo, indices: list[int]) -> Call:
        params = {"i": rest.format_indices(indices)}
        return Call("GET", rest.chunks(check_root(root), info.path), lambda r: r, params,
                    batch=((info, indices),))

    @staticmethod
    def to_fill(root: str, sink: Assembler | Batch) -> list[Call]:
        """The batch requests that fill ``sink``: one for a Batch of datasets, one per window
        for a dataset."""
        if isinstance(sink, Batch):
            return [Call("POST", rest.chunks_of_many(check_root(root)), lambda r: r,
                         json=sink.request(),
                         batch=tuple((info, range(info.nchunks)) for info, _ in sink.targets))]
        return [Calls.chunks(root, sink.info, window) for window in windows(sink.info)]

    @staticmethod
    def chunk_frames(root: str, info: DatasetInfo, indices: list[int],
                     take: Callable[[int, str, bytes], None]) -> Call:
        """Like ``chunks``, each frame handed to ``take(index, digest, data)`` (see Call)."""
        params = {"i": rest.format_indices(indices)}
        return Call("GET", rest.chunks(check_root(root), info.path), None, params, take=take,
                    batch=((info, indices),))

    @staticmethod
    def events(root: str | None) -> Call:
        params = {"root": check_root(root)} if root is not None else {}
        return Call("GET", f"{rest.API}/events", lambda r: r, params)

    @staticmethod
    def stats() -> Call:
        return Call("GET", f"{rest.API}/stats", json_of)

    @staticmethod
    def login() -> Call:
        """POST with ``json={"email": ..., "password": ...}``; decodes to the token answer."""
        return Call("POST", f"{rest.API}/login", json_of)


def event_of(line: bytes | str) -> dict[str, Any] | None:
    """One NDJSON line of the events stream; None for a keep-alive blank line."""
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("the subscriber sent an event that is not JSON") from exc
    if not isinstance(event, dict):
        raise ProtocolError("the subscriber sent an event that is not a JSON object")
    return event
