"""``Client``: the blocking driver over one pooled ``httpx.Client``.

It never touches asyncio, so it also works inside a running event loop (a notebook cell).
What each method asks and how answers decode is in client/calls.py, reads and downloads are
programs (client/dataset.py, client/download.py): this module only sends their requests and
feeds the bytes back, as client/aio.py does for ``AsyncClient``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from caterva.client.base import ClientBase, EventsBase
from caterva.client.calls import (
    POUR_BYTES,
    Call,
    Calls,
    Frame,
    RootInfo,
    dataset_address,
    event_of,
    stream_ended,
)
from caterva.client.lean import LeanTransport
from caterva.client.listing import Page, Pager
from caterva.client.program import Parallel, Program, Step, advance
from caterva.client.transport import TIMEOUT, check, mapped
from caterva.errors import from_response
from caterva.protocol.metadata import DatasetInfo

if TYPE_CHECKING:
    from caterva.client.dataset import Dataset, Progress


class Client(ClientBase):
    """Talk to a subscriber: ``Client()`` uses setting("sub") (env CATERVA_SUB).

    Use as a context manager, or call ``close()``. A subscriber that requires login takes
    ``token=``, or ``email=`` and ``password=``; with neither, the token ``caterva login``
    stored for this URL is used. ``ca_file`` verifies an https:// subscriber signed by a
    private CA (env CATERVA_CA_FILE). ``transport`` is for tests (an httpx transport, e.g.
    ``httpx.MockTransport``).

    ``selections`` is how ``ds[sel]`` reads: "chunks" (default) fetches the compressed chunks
    a selection touches and decodes them here, so every byte crosses the wire once,
    compressed; "npy" has the subscriber decode and send the array as .npy, which spares
    this process importing blosc2 (~0.3 s): the choice of a one-shot process, such as the
    CLI, that reads one small selection. Both give the same values. With "chunks", chunks are
    decompressed as they arrive, on a pool of one thread per core that ``close()`` stops.
    """

    _http_class = httpx.Client

    @staticmethod
    def _own_transport(verify: ssl.SSLContext | bool) -> httpx.BaseTransport | None:
        """client/lean.py's: httpcore's took about half of a warm 8-chunk selection's CPU
        outside decompressing, and ~10 ms of a CLI command to import. httpx's own (httpcore)
        when the environment names a proxy: httpx uses those only with its own transport."""
        from urllib.request import getproxies  # httpx's source of them too

        if any(scheme in getproxies() for scheme in ("http", "https", "all")):
            return None
        return LeanTransport(verify)

    def close(self) -> None:
        self._http.close()
        self._decoders.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the driver -------------------------------------------------------------------------

    def _run(self, program: Program) -> Any:
        """Take each step ``program`` yields, sending it the answer or throwing in the error;
        its result."""
        answer, error = None, None
        while True:
            step, result = advance(program, answer, error)
            if step is None:
                return result
            try:
                answer, error = self._take(step), None
            except BaseException as exc:  # the program cleans up, or handles it
                answer, error = None, exc

    def _take(self, step: Step) -> Any:
        if isinstance(step, Parallel):
            return self._parallel(step)
        if step.local and not self.local:
            return None
        if step.take is not None:
            frames = self._decoders.frames(step.take)
            try:
                self._feed(step, frames.submit, self._batch(step))
            except BaseException:
                frames.cancel()
                raise
            return frames
        if step.write is not None:
            return self._feed(step, step.write, self._body(step))
        if step.pour is not None:
            return self._pour(step)
        with mapped(self.url):
            response = self._http.request(step.method, step.path, **step.args())
        return step.decode(check(response))

    @contextmanager
    def _response(self, call: Call) -> Iterator[httpx.Response]:
        """``call``'s answer, streamed; an error answer raises its caterva error."""
        with mapped(self.url), self._http.stream(call.method, call.path, **call.args()) as response:
            if response.status_code >= 400:
                response.read()
                check(response)
            yield response

    @contextmanager
    def _body(self, call: Call) -> Iterator[Iterator[bytes]]:
        """``call``'s answer's body, as it comes."""
        with self._response(call) as response:
            yield response.iter_bytes()

    @contextmanager
    def _batch(self, call: Call) -> Iterator[Iterator[bytes]]:
        """The body of a chunk batch a selection reads, as it comes: asked straight of
        client/lean.py's transport with the token this client holds; through httpx when there
        is a login to make first, or an expired token to renew, or a proxy or a test's
        transport in the way. A warm selection's request spent ~0.2 ms in httpx before it
        left (twice that after the client sat idle)."""
        transport, auth = self._http._transport, self._http.auth
        if isinstance(transport, LeanTransport) and (auth is None or auth.token):
            signed = [] if auth is None else [f"Authorization: Bearer {auth.token}".encode()]
            url = httpx.URL(self.url + call.path, params=call.params)
            with mapped(self.url), transport.get(url, signed, TIMEOUT) as (status, body):
                if status < 400:
                    yield body
                    return
                error = from_response(status, b"".join(body))
            if status != 401 or auth is None or auth.email is None:
                raise error
        with self._response(call) as response:  # logs in, or again
            yield response.iter_bytes()

    def _feed(
        self, call: Call, feed: Callable[[list[Frame]], Any], body: AbstractContextManager
    ) -> None:
        """``feed`` the frames of ``call``'s answer (``body``, see _body and _batch), those of
        each network read at once."""
        reader = call.frames()
        with body as pieces:
            for data in pieces:
                if items := list(reader.feed(data)):
                    feed(items)
        reader.close()

    def _pour(self, call: Call) -> None:
        """A file's body to ``call.pour``, the pieces of POUR_BYTES or so at once."""
        with self._response(call) as response:
            if call.head is not None:
                call.head(response.headers)
            pieces, size = [], 0
            for data in response.iter_bytes():
                pieces.append(data)
                size += len(data)
                if size >= POUR_BYTES:
                    call.pour(pieces)
                    pieces, size = [], 0
            if pieces:
                call.pour(pieces)

    def _parallel(self, step: Parallel) -> None:
        from concurrent.futures import ThreadPoolExecutor  # not at import: CLI start-up

        with ThreadPoolExecutor(step.limit, thread_name_prefix="caterva-download") as pool:
            jobs = [pool.submit(self._run, program) for program in step.programs]
            try:
                for job in jobs:
                    job.result()
            except BaseException:  # a failure, or Ctrl-C: the running jobs stop at a chunk
                step.stop()
                for job in jobs:
                    job.cancel()
                raise

    # --- roots ------------------------------------------------------------------------------

    def roots(self) -> list[RootInfo]:
        """Every root the subscriber knows (announced or followed)."""
        return self._take(Calls.roots())

    def follow(self, root: str, pin: bool | None = None) -> int:
        """Follow ``root``; returns how many datasets it has. ``pin=True`` also keeps it whole
        in the subscriber's cache, fetched ahead of demand and never evicted (PinTooLarge when
        it cannot fit); ``pin=False`` stops that."""
        return self._take(Calls.follow(root, pin))

    def unfollow(self, root: str) -> None:
        """Stop following ``root``; the subscriber drops its cached chunks."""
        self._take(Calls.unfollow(root))

    def list(self, root: str) -> list[DatasetInfo]:
        """The datasets of a followed root, sorted by path, whole (with chunk digests) from
        its manifest: for a large root, ``datasets`` pages through it instead."""
        return self._take(Calls.manifest(root))

    def datasets(
        self, root: str, pattern: str = "", *, limit: int | None = None, cursor: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """The datasets of a followed root whose path starts with ``pattern``, or matches it
        as a glob (``stations/2024-*``, ``**/*.b2nd``), by path, each as a dict (its info
        without chunk digests), a page at a time as they are iterated: at most ``limit``
        (None: all), after ``cursor`` (the ``next`` of a Page, see ``pages``)."""
        for page in self.pages(root, pattern, limit=limit, cursor=cursor):
            yield from page.datasets

    def pages(
        self, root: str, pattern: str = "", *, limit: int | None = None, cursor: str | None = None
    ) -> Iterator[Page]:
        """``datasets``, a Page (datasets and the ``next`` cursor) per request."""
        pager = Pager(root, pattern, limit, cursor)
        while (call := pager.call()) is not None:
            yield pager.took(self._take(call))

    def info(self, address: str) -> DatasetInfo:
        """``info("root/path")``: layout, dtype, cparams, vlmeta and chunk digests."""
        return self._take(Calls.info(*dataset_address(address)))[0]

    def dataset(self, address: str) -> Dataset:
        """``dataset("root/path")``: a Dataset to index like a numpy array."""
        from caterva.client.dataset import Dataset  # not at import: the catalog commands

        root, path = dataset_address(address)
        info, cached = self._take(Calls.info(root, path))
        return Dataset(self, root, info, cached)

    def stats(self) -> dict[str, Any]:
        """The subscriber's cache counters."""
        return self._take(Calls.stats())

    def status(self) -> dict[str, Any]:
        """The subscriber at a glance: broker links, each followed root's source and
        freshness, the cache against its budget (what ``caterva status`` shows)."""
        return self._take(Calls.status())

    def login(self, email: str, password: str) -> dict[str, Any]:
        """Log in; returns ``{"token", "user", "issued", "expiry"}``. This client then uses
        the token (``caterva login`` also stores it for later clients)."""
        return self._signed_in(self._take(Calls.login(email, password)))

    # --- downloads --------------------------------------------------------------------------

    def download(
        self,
        address: str,
        dest: str | os.PathLike | None = None,
        *,
        progress: Progress | None = None,
        overwrite: bool = True,
    ) -> Path:
        """Download a dataset (``root/path``) or every dataset of a root (``root``).

        A Blosc2 dataset becomes a Blosc2 file equal to the original, a plain file its
        original bytes. A dataset goes to ``dest`` (default ./NAME; into it when it is a
        directory, whose parent must exist), a root into the directory ``dest`` (default
        ./ROOT) as a tree. A symlink is followed, a FIFO or device written through; with
        ``overwrite=False`` a file already there raises TargetExists (a FileExistsError).
        ``progress(done, total)`` is called with uncompressed bytes as chunks arrive.
        Returns the file or directory written.
        """
        return self._download(address, dest, progress, overwrite)[0]

    def _download(
        self, address: str, dest, progress: Progress | None, overwrite: bool
    ) -> tuple[Path, list[DatasetInfo]]:
        """``download``, and the datasets it wrote (the CLI reports them)."""
        from caterva.client import download  # not at import: the CLI's other commands

        return self._run(download.download(address, dest, progress, overwrite))

    # --- events -----------------------------------------------------------------------------

    def watch(self, root: str | None = None) -> EventStream:
        """Change events of ``root`` (or of every followed root), as dicts.

        ``with client.watch("r") as events: for event in events: ...`` -- the stream is
        open once the ``with`` is entered, so nothing that happens after is missed. Each
        event has ``root``, ``event`` (follow, unfollow, resync, create, update, delete),
        ``time``, and for dataset events ``path`` and ``chunks`` (changed chunk indices).
        """
        return EventStream(self, Calls.events(root))


class EventStream(EventsBase):
    """An open events request; iterate it for dicts, close it when done."""

    _stack_class = ExitStack

    def open(self) -> EventStream:
        if self._lines is None:
            self._lines = self._open.enter_context(self._client._response(self._call)).iter_lines()
        return self

    def close(self) -> None:
        self._closed = True
        self._open.close()

    def __enter__(self) -> EventStream:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._closed:
            raise StopIteration
        self.open()
        with mapped(self._client.url):
            try:
                for line in self._lines:
                    if (event := event_of(line)) is not None:
                        return event
            except httpx.RemoteProtocolError:  # closed without its last chunk as it stopped
                pass
        raise stream_ended(self._client.url)
