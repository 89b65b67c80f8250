"""caterva: publish, follow and read Blosc2 datasets across machines.

    import caterva

    with caterva.Client() as client:            # the subscriber at setting("sub")
        client.follow("example")
        ds = client.dataset("example/images/terrain.b2nd")
        part = ds[0:10, ::-2]                   # numpy array, == original[0:10, ::-2]
        ds.download("terrain.b2nd")

    async with caterva.AsyncClient() as client:
        ds = await client.dataset("example/images/terrain.b2nd")
        part = await ds[0:10, ::-2]

Everything here is imported on first use, so ``import caterva`` loads neither httpx, numpy
nor blosc2. tests/unit/test_public_api.py pins this list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "AsyncClient",
    "AsyncDataset",
    "BadSelection",
    "CatervaError",
    "Client",
    "Dataset",
    "DigestMismatch",
    "Forbidden",
    "NotFollowed",
    "NotFound",
    "ProtocolError",
    "RootInfo",
    "SourceOffline",
    "Unauthorized",
    "Unavailable",
    "UnknownDataset",
    "UnknownRoot",
    "__version__",
]

# name -> module that defines it
_LAZY = {
    "AsyncClient": "caterva.client",
    "AsyncDataset": "caterva.client",
    "Client": "caterva.client",
    "Dataset": "caterva.client",
    "RootInfo": "caterva.client",
    **{
        name: "caterva.errors"
        for name in (
            "BadSelection",
            "CatervaError",
            "DigestMismatch",
            "Forbidden",
            "NotFollowed",
            "NotFound",
            "ProtocolError",
            "SourceOffline",
            "Unauthorized",
            "Unavailable",
            "UnknownDataset",
            "UnknownRoot",
        )
    },
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ does the work
    from caterva.client import AsyncClient, AsyncDataset, Client, Dataset, RootInfo
    from caterva.errors import (
        BadSelection,
        CatervaError,
        DigestMismatch,
        Forbidden,
        NotFollowed,
        NotFound,
        ProtocolError,
        SourceOffline,
        Unauthorized,
        Unavailable,
        UnknownDataset,
        UnknownRoot,
    )


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("caterva")
        except PackageNotFoundError:  # running from a tree that was never installed
            value = "0+unknown"
    elif name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'caterva' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
