"""The Python API: ``Client`` / ``AsyncClient`` talk to a subscriber, ``Dataset`` /
``AsyncDataset`` index remote datasets like numpy arrays. See caterva/__init__.py.

Names load on first use, so a program that only uses ``Client`` (the CLI) never imports
the async client (anyio)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> module that defines it
_LAZY = {
    "AsyncClient": "caterva.client.aio",
    "AsyncEventStream": "caterva.client.aio",
    "AsyncDataset": "caterva.client.dataset",
    "Cached": "caterva.client.base",
    "Client": "caterva.client.sync",
    "Dataset": "caterva.client.dataset",
    "EventStream": "caterva.client.sync",
    "RootInfo": "caterva.client.base",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from caterva.client.aio import AsyncClient, AsyncEventStream
    from caterva.client.base import Cached, RootInfo
    from caterva.client.dataset import AsyncDataset, Dataset
    from caterva.client.sync import Client, EventStream


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'caterva.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
