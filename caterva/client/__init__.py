"""The Python API: ``Client`` / ``AsyncClient`` talk to a subscriber, ``Dataset`` /
``AsyncDataset`` index remote datasets like numpy arrays. See caterva/__init__.py.

Reads and downloads are written once, as programs with no I/O that yield the requests to make
(the httpx / sans-IO habit); each client is a thin driver that sends them and feeds the bytes
back:

    program.py      what a program is (steps: a Call, or Parallel programs) and ``advance``
    calls.py        the requests (Call, Calls) and the answers they decode to
    listing.py      a root's datasets a page at a time (Pager, Page)
    dataset.py      Dataset[...]: selections read as programs
    download.py     downloads planned as programs: windows, groups of small datasets, retry
    transfer.py     chunks into verified files (Assembler, Batch, Meter, Behind)
    placement.py    where a download lands (targets, .part files, FIFOs, symlinks)
    decoders.py     the threads chunk frames decode on as they arrive
    base.py         what both clients are built from (URL, options, decoding threads)
    auth.py         credentials: a token, or one traded for an email and password (no I/O)
    transport.py    the HTTP boundary: URL, timeouts, TLS, failures and error answers mapped
    lean.py         the blocking HTTP/1.1 connections ``Client`` speaks over (no httpx)
    viahttpx.py     httpx, where it carries requests: AsyncClient's, a Client's behind a proxy
    sync.py, aio.py the drivers: Client (blocking), AsyncClient (anyio)

Names load on first use, so a program that only uses ``Client`` (the CLI) never imports
the async client (anyio), nor httpx."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> module that defines it
_LAZY = {
    "AsyncClient": "caterva.client.aio",
    "AsyncEventStream": "caterva.client.aio",
    "AsyncDataset": "caterva.client.dataset",
    "Cached": "caterva.client.calls",
    "Client": "caterva.client.sync",
    "Dataset": "caterva.client.dataset",
    "EventStream": "caterva.client.sync",
    "Page": "caterva.client.listing",
    "RootInfo": "caterva.client.calls",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from caterva.client.aio import AsyncClient, AsyncEventStream
    from caterva.client.calls import Cached, RootInfo
    from caterva.client.dataset import AsyncDataset, Dataset
    from caterva.client.listing import Page
    from caterva.client.sync import Client, EventStream


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'caterva.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
