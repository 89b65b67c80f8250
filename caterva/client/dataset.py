"""Remote datasets that index like numpy arrays.

``ds[sel]`` equals ``original[sel]`` for basic selections: ints (negative too), slices with
any step (negative too) and ``...``. Like numpy, indexing every axis with an int gives a
scalar, anything else an array. Only the chunks a selection touches travel.

Structured dtypes: ``ds["name"]`` is a *view* of one field (no I/O), with the field's dtype
and shape, indexed the same way: ``ds["x"][0:5]`` equals ``original["x"][0:5]`` (and
``original[0:5]["x"]``). A sub-array field ``(2,)f4`` adds its axes at the end, as in numpy.

``Dataset`` (sync) reads on ``ds[sel]``; ``AsyncDataset`` reads on ``await ds[sel]`` or
``await ds.get(sel)``. Both share ``DatasetBase``: metadata, key checks, decoding (no I/O).
numpy is imported only when something is read or ``dtype`` is asked for, blosc2 only when
something is read with ``selections="chunks"`` (the default; see ``Client``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caterva.client.base import Selections
from caterva.client.calls import Cached, Calls, Printed
from caterva.client.chunksource import AsyncChunkSource, ChunkSource
from caterva.client.npybody import NpyBody
from caterva.client.program import Program
from caterva.client.transfer import Progress
from caterva.errors import BadSelection, DatasetChanged, DigestMismatch, ProtocolError
from caterva.protocol import rest, selection
from caterva.protocol.metadata import DatasetInfo

if TYPE_CHECKING:
    import numpy as np

    from caterva.client.aio import AsyncClient
    from caterva.client.sync import Client

#: A read without I/O: a program (client/program.py) that yields each Call to make and is
#: sent its answer, and returns numpy's answer. Client._run and AsyncClient._run drive it, so
#: the requests and the decoding are written once for both.
Reader = Program


def _native(value: Any) -> Any:
    """vlmeta as it travels (JSON, bytes tagged {"__bytes__": base64}) -> Python values."""
    if isinstance(value, dict):
        if set(value) == {"__bytes__"} and isinstance(value["__bytes__"], str):
            return base64.b64decode(value["__bytes__"])
        return {k: _native(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_native(v) for v in value]
    return value


class DatasetBase:
    """Metadata and selection handling shared by Dataset and AsyncDataset (no I/O)."""

    def __init__(self, root: str, info: DatasetInfo, cached: Cached, field: str | None = None):
        self.root = root
        self.info = info
        #: how much the subscriber held when this object was made (see ``refresh``)
        self.cached = cached
        #: the structured field this view reads, or None for whole records
        self.field = field

    # --- metadata ---------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self.info.path

    @property
    def address(self) -> str:
        return f"{self.root}/{self.info.path}"

    @property
    def kind(self) -> str:
        """``b2nd`` (NDArray), ``b2frame`` (SChunk) or ``file``; the last two read as bytes."""
        return self.info.kind

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.info.shape) + self._field_subshape()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        dt = self._record_dtype()
        return dt if self.field is None else dt.fields[self.field][0].base

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(self.info.chunks)

    @property
    def blocks(self) -> tuple[int, ...]:
        return tuple(self.info.blocks)

    @property
    def nchunks(self) -> int:
        return self.info.nchunks

    @property
    def nbytes(self) -> int:
        """Uncompressed bytes of the whole dataset."""
        return self.info.nbytes

    @property
    def cbytes(self) -> int:
        """Compressed bytes as stored at the source."""
        return self.info.cbytes

    @property
    def cparams(self) -> Any:
        """The compression parameters, as a ``blosc2.CParams`` (so it imports blosc2)."""
        from caterva.protocol.layout import cparams_from_json

        return cparams_from_json(self.info.cparams)

    @property
    def vlmeta(self) -> dict[str, Any]:
        return {k: _native(v) for k, v in self.info.vlmeta.items()}

    @property
    def fields(self) -> tuple[str, ...]:
        """Field names of a structured dtype (empty otherwise); no numpy needed."""
        dt = self.info.dtype
        return tuple(dt["names"]) if isinstance(dt, dict) and "names" in dt else ()

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d dataset")
        return self.shape[0]

    def __repr__(self) -> str:
        at = f"[{self.field!r}]" if self.field is not None else ""
        return f"<{type(self).__name__} {self.address}{at} shape={self.shape} kind={self.kind}>"

    # --- selections -------------------------------------------------------------------------

    def _record_dtype(self) -> np.dtype:
        from caterva.protocol.dtypes import dtype_from_json

        return dtype_from_json(self.info.dtype)

    def _field_subshape(self) -> tuple[int, ...]:
        """The axes a sub-array field adds, from the dtype's JSON (no numpy: `caterva show`
        checks a selection of one without it)."""
        if self.field is None:
            return ()
        dt = self.info.dtype
        try:
            return _subshape(dt["formats"][list(dt["names"]).index(self.field)])
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise ProtocolError(f"invalid dtype description: {dt!r:.80}") from exc

    def _field_view_args(self, name: str) -> tuple[str, DatasetInfo, Cached, str]:
        if self.field is not None:
            raise BadSelection(f"{self.address}[{self.field!r}] is already a single field")
        if name not in self.fields:
            known = ", ".join(self.fields) or "none: its dtype is not structured"
            raise BadSelection(f"{self.address} has no field {name!r} (fields: {known})")
        return self.root, self.info, self.cached, name

    def _reader(self, key: Any, how: Selections) -> Reader:
        """The steps reading ``self[key]`` (see ``Reader``); a bad key raises here, at once.

        ``how`` is the client's ``selections``: "chunks" fetches the compressed chunks the key
        touches and decodes them here, "npy" has the subscriber decode and send an .npy body.
        """
        key = key if isinstance(key, tuple) else (key,)
        norm = self._normalize(key)
        ndim = len(self.info.shape)
        remote, local = norm[:ndim], norm[ndim:]  # local: the axes of a sub-array field
        want = selection.result_shape(remote) + self._field_subshape()
        scalar = selection.is_scalar(key, norm)
        read = self._read_chunks(remote) if how == "chunks" else self._read_npy(remote, want)
        return self._finish(read, want, local, scalar)

    def _normalize(self, key: tuple) -> selection.Key:
        try:
            selection.format(key)  # checks every item is an int, a slice of ints or ...
            return selection.normalize(key, self.shape)
        except TypeError as exc:  # e.g. a numpy array used as an index
            raise BadSelection(
                f"unsupported index {selection.describe(key)}: use ints, slices and ..."
            ) from exc

    def _finish(self, read: Reader, want: tuple[int, ...], local: tuple, scalar: bool) -> Reader:
        array = yield from read
        if array.shape != want:
            raise ProtocolError(f"asked for shape {want}, the subscriber sent {array.shape}")
        if local:
            array = array[(Ellipsis, *local)]
        return array[()] if scalar else array

    def _read_npy(self, remote: tuple, want: tuple[int, ...]) -> Reader:
        body = NpyBody(want)
        yield Calls.data(self.root, self.path, selection.format(remote), self.field, body.pour)
        return body.result()

    def _read_chunks(self, remote: tuple) -> Reader:
        # every byte crosses the wire once, compressed, instead of the decoded array going
        # through the subscriber's HTTP stack and ours (8 chunks, 16 MiB: ~45 ms -> ~20 ms)
        from caterva.protocol.gather import Gather  # blosc2: only when reading

        needed = selection.touched_chunks(remote, self.info.chunks, self.info.chunk_grid)
        gather = Gather(self.info, remote)
        if not (yield from self._chunks(needed, gather.add)):
            # our info is older than the subscriber's: refresh it once
            info, cached = yield Calls.info(self.root, self.path)
            if _layout(info) != _layout(self.info):
                raise DigestMismatch(
                    f"{self.address} changed shape or layout since it was "
                    "opened: open it again (refresh())"
                )
            self.info, self.cached = info, cached  # so later reads need no refresh
            gather = Gather(self.info, remote)
            if not (yield from self._chunks(needed, gather.add)):
                raise DigestMismatch(f"{self.address} changed while being read: read it again")
        array = gather.result()
        if self.field is not None:
            # a copy, as the .npy path gives: not a strided view keeping every field alive
            array = array[self.field].copy()
        return array

    def _chunks(self, needed: list[int], add: Callable[[int, bytes], None]) -> Reader:
        """``add(index, compressed bytes)`` each chunk ``needed``, on the client's decoding
        threads as they arrive; False when a digest is not the one our info promises (the
        dataset changed since we read its info)."""
        digests, got, stale = self.info.digests, set(), []

        def take(index: int, digest: str, data: bytes) -> None:
            # only chunks asked for come here (Call.frames checks them); the subscriber
            # verified each chunk against the digest its frame carries, so comparing
            # digests is enough (as a download does, client/transfer.py)
            if digest != digests[index]:
                stale.append(index)
            elif not stale:
                add(index, data)
                got.add(index)

        for start in range(0, len(needed), rest.MAX_BATCH):
            part = needed[start : start + rest.MAX_BATCH]
            frames = yield Calls.chunks(self.root, self.info, part, take=take)
            frames.finish()
            if stale:
                return False
        if missing := set(needed) - got:
            raise ProtocolError(f"the subscriber did not send chunk {min(missing)}")
        return True


def _subshape(dtype: Any) -> tuple[int, ...]:
    """The shape of a sub-array dtype's JSON form ({"base": ..., "shape": [...]}), nested ones
    flattened as numpy does; () for any other dtype."""
    if isinstance(dtype, dict) and "base" in dtype:
        return tuple(int(n) for n in dtype["shape"]) + _subshape(dtype["base"])
    return ()


def _layout(info: DatasetInfo) -> tuple:
    """What a normalized key depends on: a read can retry with new digests when it is equal."""
    return (info.kind, info.shape, info.dtype, info.chunks, info.blocks, info.chunksize)


class Dataset(ChunkSource, DatasetBase):
    """A dataset of a followed root, read through the subscriber (``Client.dataset``); a
    blosc2 proxy source too (``blosc2.Proxy(ds)``, see caterva.client.chunksource)."""

    def __init__(
        self, client: Client, root: str, info: DatasetInfo, cached: Cached, field: str | None = None
    ) -> None:
        super().__init__(root, info, cached, field)
        self._client = client

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return Dataset(self._client, *self._field_view_args(key))
        how = self._client.selections
        try:
            return self._client._run(self._reader(key, how))
        except DatasetChanged:  # the version the read began with is gone: once more
            return self._client._run(self._reader(key, how))

    def get(self, key: Any = Ellipsis) -> Any:
        """``ds.get(sel)`` is ``ds[sel]``; ``ds.get()`` reads everything."""
        return self[key]

    def _printed(self, key: Any, width: int) -> Printed:
        """``self[key]`` as numpy prints it for a console ``width`` wide (caterva.protocol.
        printing), printed by the subscriber: neither the values nor numpy come here (`caterva
        show`). NotSupported when the subscriber declines: too many values to print."""
        key = key if isinstance(key, tuple) else (key,)
        shape = selection.result_shape(self._normalize(key))  # a bad key raises here, at once
        # the key as given: whether it asks for a scalar is part of what is printed
        call = Calls.printed(self.root, self.path, selection.format(key), self.field, width)
        try:
            printed = self._client._take(call)
        except DatasetChanged:  # the version the read began with is gone: once more
            printed = self._client._take(call)
        if printed.shape != shape:
            raise ProtocolError(f"asked for shape {shape}, the subscriber printed {printed.shape}")
        return printed

    def __array__(self, dtype=None, copy=None):
        array = self[...]
        return array if dtype is None else array.astype(dtype)

    def download(self, dest: str | Path | None = None, *, progress: Progress | None = None) -> Path:
        """Write the whole dataset to ``dest`` (see ``Client.download``)."""
        from caterva.client import download  # not at import: the CLI's other commands

        return self._client._run(download.dataset(self.root, self.info, dest, progress))

    def refresh(self) -> Dataset:
        """A new Dataset with the subscriber's current info and cached amounts."""
        ds = self._client.dataset(self.address)
        return ds if self.field is None else ds[self.field]


class AsyncDataset(AsyncChunkSource, DatasetBase):
    """The async twin of Dataset: ``await ds[sel]`` or ``await ds.get(sel)``."""

    def __init__(
        self,
        client: AsyncClient,
        root: str,
        info: DatasetInfo,
        cached: Cached,
        field: str | None = None,
    ) -> None:
        super().__init__(root, info, cached, field)
        self._client = client

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):  # a field view is made without I/O, so it is not awaited
            return AsyncDataset(self._client, *self._field_view_args(key))
        reader = self._reader(key, self._client.selections)  # a bad key raises before any await
        return self._read(reader, key)

    async def _read(self, reader: Reader, key: Any) -> Any:
        try:
            return await self._client._run(reader)
        except DatasetChanged:  # the version the read began with is gone: once more
            return await self._client._run(self._reader(key, self._client.selections))

    async def get(self, key: Any = Ellipsis) -> Any:
        return await self[key]

    async def download(
        self, dest: str | Path | None = None, *, progress: Progress | None = None
    ) -> Path:
        from caterva.client import download  # not at import: the CLI's other commands

        return await self._client._run(download.dataset(self.root, self.info, dest, progress))

    async def refresh(self) -> AsyncDataset:
        ds = await self._client.dataset(self.address)
        return ds if self.field is None else ds[self.field]
