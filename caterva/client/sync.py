"""``Client``: the blocking front end over one pooled ``httpx.Client``.

It never touches asyncio, so it also works inside a running event loop (a notebook cell).
Requests are built and answers decoded in client/base.py, shared with AsyncClient.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from caterva.client.base import (
    STREAM_TIMEOUT,
    TIMEOUT,
    Call,
    Calls,
    Credentials,
    Decoders,
    RootInfo,
    base_url,
    check,
    connection_options,
    dataset_address,
    event_of,
    mapped,
)
from caterva.client.dataset import (
    Dataset,
    Progress,
    Reader,
    Selections,
    advance,
    check_selections,
)
from caterva.client.transfer import (
    ROOT_PARALLEL,
    Assembler,
    Batch,
    Behind,
    Meter,
    dataset_target,
    groups,
    made_dirs,
    root_targets,
)
from caterva.errors import DatasetChanged, DigestMismatch, Unavailable
from caterva.protocol.metadata import DatasetInfo
from caterva.protocol.names import split_address


class Client:
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

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        email: str | None = None,
        password: str | None = None,
        ca_file: str | os.PathLike | None = None,
        selections: Selections = "chunks",
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = base_url(url)
        self.selections = check_selections(selections)
        options = connection_options(self.url, token=token, email=email, password=password,
                                     ca_file=ca_file)
        self._http = httpx.Client(base_url=self.url, timeout=TIMEOUT, transport=transport,
                                  **options)
        self._decoders = Decoders()

    def close(self) -> None:
        self._http.close()
        self._decoders.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client {self.url}>"

    def _send(self, call: Call) -> Any:
        if call.take is not None:
            frames = self._decoders.frames(call.take)
            try:
                self._stream_chunks(call, frames.submit)
                frames.finish()
            finally:
                frames.cancel()
            return None
        with mapped(self.url):
            response = self._http.request(call.method, call.path, params=call.params or None)
        return call.decode(check(response))

    def _run(self, reader: Reader) -> Any:
        """Make the requests a Reader yields, feeding it each answer; its result."""
        call, result = advance(reader, None)
        while call is not None:
            call, result = advance(reader, self._send(call))
        return result

    # --- roots ------------------------------------------------------------------------------

    def roots(self) -> list[RootInfo]:
        """Every root the subscriber knows (announced or followed)."""
        return self._send(Calls.roots())

    def follow(self, root: str) -> int:
        """Follow ``root``; returns how many datasets it has."""
        return self._send(Calls.follow(root))

    def unfollow(self, root: str) -> None:
        """Stop following ``root``; the subscriber drops its cached chunks."""
        self._send(Calls.unfollow(root))

    def list(self, root: str) -> list[DatasetInfo]:
        """The datasets of a followed root, sorted by path."""
        return self._send(Calls.manifest(root))

    def info(self, address: str) -> DatasetInfo:
        """``info("root/path")``: layout, dtype, cparams, vlmeta and chunk digests."""
        return self._send(Calls.info(*dataset_address(address)))[0]

    def dataset(self, address: str) -> Dataset:
        """``dataset("root/path")``: a Dataset to index like a numpy array."""
        root, path = dataset_address(address)
        info, cached = self._send(Calls.info(root, path))
        return Dataset(self, root, info, cached)

    def stats(self) -> dict[str, Any]:
        """The subscriber's cache counters."""
        return self._send(Calls.stats())

    def login(self, email: str, password: str) -> dict[str, Any]:
        """Log in; returns ``{"token", "user", "issued", "expiry"}``. This client then uses
        the token (``caterva login`` also stores it for later clients)."""
        call = Calls.login()
        with mapped(self.url):
            response = self._http.request(call.method, call.path, auth=None,
                                          json={"email": email, "password": password})
        answer = call.decode(check(response))
        self._http.auth = Credentials(f"{self.url}/v1/login", answer["token"], None, None)
        return answer

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
        root, path = split_address(address)
        try:
            return self._download(root, path, dest, progress, overwrite)
        except (DatasetChanged, DigestMismatch):  # raced a change: once more, from the top
            # (what is there now was checked, or written by the first try)
            return self._download(root, path, dest, progress, True)

    def _download(self, root: str, path: str | None, dest, progress, overwrite: bool
                   ) -> Path:
        if path is None:
            return self._download_root(root, dest, progress, overwrite)
        info, _ = self._send(Calls.info(root, path))
        return self._download_dataset(root, info, dest, progress, overwrite)

    def _download_dataset(self, root: str, info: DatasetInfo, dest, progress,
                          overwrite: bool = True) -> Path:
        target = dataset_target(info.path, dest, overwrite)
        return self._fetch_into(root, info, target, Meter(info.nbytes, progress))

    def _download_root(self, root: str, dest, progress, overwrite: bool = True) -> Path:
        base, targets = root_targets(root, self.list(root), dest, overwrite)
        with made_dirs(base, targets):
            self._download_all(root, targets, progress)
        return base

    def _download_all(self, root: str, targets, progress) -> None:
        meter = Meter(sum(info.nbytes for info, _ in targets), progress)
        batches, alone = groups(targets)
        sinks = [Batch(batch, meter) for batch in batches] + [
            Assembler(info, target, meter) for info, target in alone]
        # a few requests at a time: waiting on one at a time leaves both this process and
        # the subscriber idle half the time
        from concurrent.futures import ThreadPoolExecutor  # not at import: CLI start-up

        with ThreadPoolExecutor(ROOT_PARALLEL, thread_name_prefix="caterva-download") as pool:
            jobs = [pool.submit(self._fill, root, sink) for sink in sinks]
            try:
                for job in jobs:
                    job.result()
            except BaseException:  # a failure, or Ctrl-C: the running jobs stop at a chunk
                meter.cancel()
                for job in jobs:
                    job.cancel()
                raise

    def _fetch_into(self, root: str, info: DatasetInfo, target: Path, meter: Meter) -> Path:
        return self._fill(root, Assembler(info, target, meter))

    def _fill(self, root: str, sink: Assembler | Batch):
        sink.open()
        # chunks are written in a thread while the next ones arrive (not worth it for one)
        writer = Behind(sink.add_all) if sink.nchunks > 1 else None
        try:
            for call in Calls.to_fill(root, sink):
                self._stream_chunks(call, writer or sink.add_all)
            if writer is not None:
                writer.close()
            return sink.finish()
        except BaseException:
            if writer is not None:
                writer.stop()
            sink.abort()
            raise

    def _stream_chunks(self, call: Call, add_all: Callable[[list], Any]) -> None:
        """Feed ``add_all`` the frames of ``call``'s answer, those of each network read at once."""
        reader = call.frames()
        with mapped(self.url):
            with self._http.stream(call.method, call.path, params=call.params,
                                   json=call.json) as response:
                if response.status_code >= 400:
                    response.read()
                    check(response)
                for data in response.iter_bytes():
                    if items := list(reader.feed(data)):
                        add_all(items)
        reader.close()

    # --- events -----------------------------------------------------------------------------

    def watch(self, root: str | None = None) -> EventStream:
        """Change events of ``root`` (or of every followed root), as dicts.

        ``with client.watch("r") as events: for event in events: ...`` -- the stream is
        open once the ``with`` is entered, so nothing that happens after is missed. Each
        event has ``root``, ``event`` (follow, unfollow, resync, create, update, delete),
        ``time``, and for dataset events ``path`` and ``chunks`` (changed chunk indices).
        """
        return EventStream(self, Calls.events(root))


class EventStream:
    """An open events request; iterate it for dicts, close it when done."""

    def __init__(self, client: Client, call: Call) -> None:
        self._client = client
        self._call = call
        self._response: httpx.Response | None = None
        self._lines = None
        self._closed = False

    def open(self) -> EventStream:
        if self._response is None:
            client = self._client
            with mapped(client.url):
                request = client._http.build_request(
                    "GET", self._call.path, params=self._call.params, timeout=STREAM_TIMEOUT
                )
                response = client._http.send(request, stream=True)
                if response.status_code >= 400:
                    response.read()
                    response.close()
                    check(response)
            self._response = response
            self._lines = response.iter_lines()
        return self

    def close(self) -> None:
        self._closed = True
        if self._response is not None:
            self._response.close()

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
            for line in self._lines:
                event = event_of(line)
                if event is not None:
                    return event
        # the subscriber never ends the stream on its own: it stopped
        raise Unavailable(f"the subscriber at {self._client.url} closed the event stream")
