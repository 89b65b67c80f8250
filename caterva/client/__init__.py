"""The Python API: ``Client`` / ``AsyncClient`` talk to a subscriber, ``Dataset`` /
``AsyncDataset`` index remote datasets like numpy arrays. See caterva/__init__.py."""

from caterva.client.aio import AsyncClient, AsyncEventStream
from caterva.client.base import Cached, RootInfo
from caterva.client.dataset import AsyncDataset, Dataset
from caterva.client.sync import Client, EventStream

__all__ = [
    "AsyncClient",
    "AsyncDataset",
    "AsyncEventStream",
    "Cached",
    "Client",
    "Dataset",
    "EventStream",
    "RootInfo",
]
