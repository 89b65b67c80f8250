"""The public API is what ``caterva.__all__`` says, nothing loads until it is used, and the
errors users catch are also the builtins they already know (STYLE habit 4)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import caterva

PUBLIC = [
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


def test_all_is_pinned():
    assert sorted(caterva.__all__) == PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_resolves(name):
    value = getattr(caterva, name)
    if name != "__version__":
        assert value.__module__.startswith("caterva."), name
    assert name in dir(caterva)


def test_version_is_the_installed_one():
    from importlib.metadata import version

    assert caterva.__version__ == version("caterva")


def test_unknown_names_fail_like_any_module():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        caterva.Nope  # noqa: B018


def test_import_is_cheap():
    """`import caterva` loads neither httpx, numpy nor blosc2; nor does the blocking client
    (its requests go over client/lean.py); the async one loads httpx."""
    code = (
        "import sys, caterva\n"
        "heavy = lambda: sorted({m.split('.')[0] for m in sys.modules}\n"
        "                       & {'httpx', 'numpy', 'blosc2'})\n"
        "print(heavy())\n"
        "caterva.Client('http://127.0.0.1:9').close()\n"
        "print(heavy())\n"
        "caterva.AsyncClient\n"
        "print(heavy())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "[]", "['httpx']"]


@pytest.mark.parametrize(
    "error, builtin",
    [
        ("UnknownDataset", FileNotFoundError),
        ("UnknownRoot", LookupError),
        ("BadSelection", IndexError),
        ("BadSelection", ValueError),
        ("Unavailable", ConnectionError),
        ("SourceOffline", ConnectionError),
        ("Forbidden", PermissionError),
        ("ProtocolError", ValueError),
    ],
)
def test_errors_are_builtins_too(error, builtin):
    cls = getattr(caterva, error)
    assert issubclass(cls, caterva.CatervaError) and issubclass(cls, builtin)


def test_client_and_async_client_are_twins():
    def public(cls):
        return {n for n in dir(cls) if not n.startswith("_")}

    assert public(caterva.Client) - {"close"} == public(caterva.AsyncClient) - {"aclose"}
    assert public(caterva.Dataset) == public(caterva.AsyncDataset)
    assert {
        "roots",
        "follow",
        "unfollow",
        "list",
        "info",
        "dataset",
        "download",
        "watch",
    } <= public(caterva.Client)
    # (info, cached, root and field are set per instance)
    assert {
        "shape",
        "dtype",
        "chunks",
        "blocks",
        "vlmeta",
        "nchunks",
        "kind",
        "download",
        "get",
        "refresh",
        "address",
    } <= public(caterva.Dataset)
