"""``Client``: the blocking driver over client/lean.py's connections (httpx's when a test gives
a transport, or the environment names a proxy: client/viahttpx.py).

It never touches asyncio, so it also works inside a running event loop (a notebook cell).
What each method asks and how answers decode is in client/calls.py, reads and downloads are
programs (client/dataset.py, client/download.py): this module only sends their requests and
feeds the bytes back, as client/aio.py does for ``AsyncClient``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from caterva.client.auth import END, step
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
from caterva.client.lean import Answer, Pool
from caterva.client.listing import Page, Pager
from caterva.client.program import Parallel, Program, Step, advance
from caterva.client.transport import TIMEOUT, check, cut_short, mapped
from caterva.protocol.metadata import DatasetInfo

if TYPE_CHECKING:
    from caterva.client.dataset import Dataset, Progress


class Client(ClientBase):
    """Talk to a subscriber: ``Client()`` uses setting("sub") (env CATERVA_SUB).

    Use as a context manager, or call ``close()``. A subscriber that requires login takes
    ``token=``, or ``email=`` and ``password=``; with neither, the token ``caterva login``
    stored for this URL is used. ``ca_file`` verifies an https:// subscriber signed by a
    private CA (env CATERVA_CA_FILE). ``transport`` is for tests (an httpx transport, e.g.
    ``httpx.MockTransport``): the requests then go through httpx, as they do when the
    environment names a proxy (HTTP_PROXY, ...).

    ``selections`` is how ``ds[sel]`` reads: "chunks" (default) fetches the compressed chunks
    a selection touches and decodes them here, so every byte crosses the wire once,
    compressed; "npy" has the subscriber decode and send the array as .npy, which spares
    this process importing blosc2 (~0.3 s): the choice of a one-shot process, such as the
    CLI, that reads one small selection. Both give the same values. With "chunks", chunks are
    decompressed as they arrive, on a pool of one thread per core that ``close()`` stops.
    """

    def _connect(self, transport: Any) -> None:
        """client/lean.py's connections: httpcore took about half of a warm 8-chunk
        selection's CPU outside decompressing, and importing httpx ~25 ms of a CLI command.
        httpx with a test's transport, or a proxy the environment names (HTTP_PROXY,
        HTTPS_PROXY, ALL_PROXY in either case, which httpx would use)."""
        proxied = any(
            value and name.lower() in ("http_proxy", "https_proxy", "all_proxy")
            for name, value in os.environ.items()
        )
        if transport is None and not proxied:
            self._pool: Pool | None = Pool(self._options["verify"])
            return
        import httpx

        from caterva.client import viahttpx

        self._pool = None
        self._http = viahttpx.make(httpx.Client, self.url, self._options, transport)

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._pool is not None:
            self._pool.close()
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
                self._feed(step, frames.submit, self._body(step))
            except BaseException:
                frames.cancel()
                raise
            return frames
        if step.write is not None:
            return self._feed(step, step.write, self._body(step))
        if step.pour is not None:
            return self._pour(step)
        with self._response(step) as response:
            response.read()
        return step.decode(response)

    @contextmanager
    def _response(self, call: Call) -> Iterator[Any]:
        """``call``'s answer, streamed; an error answer raises its caterva error."""
        with mapped(self.url), self._exchange(call) as response:
            if response.status_code >= 400:
                response.read()
                check(response)
            yield response

    @contextmanager
    def _exchange(self, call: Call) -> Iterator[Any]:
        """``call`` sent with this client's credentials (a login made first when they need
        one, and again when the token expired: client/auth.py); its answer."""
        if self._pool is None:
            from caterva.client import viahttpx

            with self._http.stream(call.method, call.path, **viahttpx.args(call)) as response:
                yield response
            return
        auth = self._auth if call.signed else None
        flow = auth.flow() if auth is not None else iter([None])
        next_step = next(flow)
        while True:
            if next_step is not None:  # a login, read whole
                with self._send(next_step, None) as login:
                    login.read()
                next_step = flow.send(login)
                continue
            with self._send(call, auth) as answer:
                if auth is not None and auth.renews(answer):
                    answer.read()
                    next_step = step(flow, answer)  # a login to make, then this once more
                    if next_step is not END:
                        continue
                yield answer  # a 401 included, when not for an expired token
                return

    def _send(self, call: Call, auth: Any) -> AbstractContextManager[Answer]:
        """``call`` over client/lean.py's connections, signed with ``auth``'s token if any."""
        url = self.url + call.path + (f"?{urlencode(call.params)}" if call.params else "")
        headers, body = [], b""
        if auth is not None and (value := auth.header()) is not None:
            headers.append(f"Authorization: {value}".encode())
        if call.json is not None:
            body = json.dumps(call.json, separators=(",", ":")).encode()
            headers.append(b"Content-Type: application/json")
        return self._pool.request(call.method, url, headers, body, call.timeout or TIMEOUT)

    @contextmanager
    def _body(self, call: Call) -> Iterator[Iterator[bytes]]:
        """``call``'s answer's body, as it comes."""
        with self._response(call) as response:
            yield response.iter_bytes()

    def _feed(
        self, call: Call, feed: Callable[[list[Frame]], Any], body: AbstractContextManager
    ) -> None:
        """``feed`` the frames of ``call``'s answer (``body``, see _body), those of each
        network read at once."""
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
            except Exception as exc:  # closed without its last chunk as it stopped
                if not cut_short(exc):
                    raise
        raise stream_ended(self._client.url)
