"""The requests a client makes and the answers they decode to, with no I/O.

    Call        one request: method, path, params or JSON body, and what its answer becomes:
                a decoded value (``decode``) or chunk frames handed on as they arrive
                (``take`` one by one on the decoding threads, or ``write`` in order)
    Calls       the Call behind each client method
    RootInfo, Cached    answers the public API returns

``Client`` (client/sync.py) and ``AsyncClient`` (client/aio.py) only send Calls and feed the
bytes back, so both behave the same by construction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from caterva.client.transport import STREAM_TIMEOUT, Timeout
from caterva.errors import BadRequest, ProtocolError, Unavailable
from caterva.protocol import rest
from caterva.protocol.metadata import DatasetInfo, Manifest
from caterva.protocol.names import check_root, split_address

# (chunk index, digest, compressed bytes): to ``write``, the bytes as pieces (rest.BatchReader)
Frame = tuple[int, str, bytes | list[memoryview]]
POUR_BYTES = 4 << 20  # a file's body is handed on (hashed, written) about this much at a time


@dataclass(frozen=True)
class Call:
    """One request to the subscriber and what its answer becomes.

    With ``decode``, the answer is read whole and decoded. Otherwise it is a batch of chunk
    frames (those of ``batch``), each parsed as it arrives (not read whole, then copied
    again into chunks) and handed on: to ``take(index, digest, data)`` on a decoding thread,
    so chunks decompress while the next ones travel (the answer is then the ``Frames`` to
    ``finish``, client/decoders.py), or to ``write(frames)`` in order, the frames of each
    network read at once (blocking file work: the async client calls it in a worker thread).
    With ``pour``, the answer is a body read as it arrives (a file, an .npy selection):
    ``head``, when given, gets its headers, then ``pour`` its body in order, in pieces of
    about POUR_BYTES (blocking file work too). A ``local`` call is asked only of a subscriber
    on this machine (a loopback URL); elsewhere its answer is None, with no request.
    """

    method: str
    path: str
    decode: Callable[[Any], Any] | None = None  # given the answer, read whole
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None  # a JSON request body
    signed: bool = True  # False: sent without credentials (the login itself)
    timeout: Timeout | None = None  # None: the client's
    batch: tuple[tuple[DatasetInfo, Any], ...] = ()  # the chunks a frames answer holds
    take: Callable[[int, str, bytes], None] | None = None
    write: Callable[[list[Frame]], None] | None = None
    head: Callable[[Mapping[str, str]], None] | None = None
    pour: Callable[[list[bytes]], None] | None = None
    local: bool = False

    def frames(self) -> rest.BatchReader:
        """The reader of a frames answer: frames that are not the ones asked for, or bigger
        than their chunks can be, fail before their bytes are kept. Frames to ``write`` keep
        their bytes as the pieces received (written as they are, layout.write_all)."""
        return rest.BatchReader(rest.expected_frames(self.batch), joined=self.write is None)


def json_of(response: Any) -> Any:
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
    key: str | None = None  # the signing key the root is bound to (see README, "Trust")
    problem: str | None = None  # why the subscriber's last resync of it failed, if it did
    pinned: bool = False  # kept whole in the subscriber's cache, ahead of demand
    # of a pinned root: {"bytes": held, "total": ..., "behind": chunks missing, "problem": ...}
    replica: dict[str, Any] | None = None

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
            key=body.get("key"),
            problem=body.get("problem"),
            pinned=bool(body.get("pinned")),
            replica=body.get("replica") if isinstance(body.get("replica"), dict) else None,
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
            "key": self.key,
            "problem": self.problem,
            "pinned": self.pinned,
            "replica": self.replica,
        }


@dataclass(frozen=True)
class Cached:
    """How much of a dataset the subscriber holds: chunks and their compressed bytes."""

    chunks: int
    bytes: int


@dataclass(frozen=True)
class Printed:
    """A selection as numpy prints it, printed by the subscriber (``Calls.printed``)."""

    dtype: Any  # its JSON form (caterva.protocol.dtypes)
    shape: tuple[int, ...]
    text: str


def _printed(response: Any) -> Printed:
    body = json_of(response)
    try:
        dtype, shape, text = body["dtype"], body["shape"], body["text"]
        if not (
            isinstance(dtype, (str, dict))
            and isinstance(text, str)
            and all(type(n) is int and n >= 0 for n in shape)
        ):
            raise TypeError
        return Printed(dtype, tuple(shape), text)
    except (TypeError, KeyError) as exc:
        raise ProtocolError("the subscriber sent an invalid printed selection") from exc


def _roots(response: Any) -> list[RootInfo]:
    body = json_of(response)
    entries = body.get("roots") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise ProtocolError("the subscriber sent an invalid roots list")
    return [RootInfo.from_dict(e) for e in entries]


def _followed(response: Any) -> int:
    body = json_of(response)
    return int(body.get("datasets", 0)) if isinstance(body, dict) else 0


def _manifest(response: Any) -> list[DatasetInfo]:
    return sorted(Manifest.from_dict(json_of(response)).datasets, key=lambda d: d.path)


def _info(response: Any) -> tuple[DatasetInfo, Cached]:
    body = json_of(response)
    info = DatasetInfo.from_dict(body)
    cached = body.get("cached") or {}
    return info, Cached(int(cached.get("chunks", 0)), int(cached.get("bytes", 0)))


def root_path(root: str, what: str) -> str:
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
    def follow(root: str, pin: bool | None = None) -> Call:
        params = {} if pin is None else {"pin": "true" if pin else "false"}
        return Call("PUT", root_path(root, "follow"), _followed, params)

    @staticmethod
    def unfollow(root: str) -> Call:
        return Call("DELETE", root_path(root, "follow"), lambda r: None)

    @staticmethod
    def manifest(root: str) -> Call:
        return Call("GET", root_path(root, "manifest"), _manifest)

    @staticmethod
    def info(root: str, path: str) -> Call:
        return Call("GET", rest.info(check_root(root), path), _info)

    @staticmethod
    def data(
        root: str, path: str, sel: str, field_name: str | None, pour: Callable[[list[bytes]], None]
    ) -> Call:
        """A selection as .npy, its body to ``pour`` (see Call)."""
        params = {"sel": sel}
        if field_name is not None:
            params["field"] = field_name
        path = f"{root_path(root, 'data')}/{quote(path, safe='/')}"
        return Call("GET", path, params=params, pour=pour)

    @staticmethod
    def printed(root: str, path: str, sel: str, field_name: str | None, width: int) -> Call:
        """A selection as numpy prints it on lines of ``width`` characters: a Printed."""
        params = {"sel": sel, "width": str(width)}
        if field_name is not None:
            params["field"] = field_name
        path = f"{root_path(root, 'printed')}/{quote(path, safe='/')}"
        return Call("GET", path, _printed, params)

    @staticmethod
    def chunks(
        root: str,
        info: DatasetInfo,
        indices: list[int],
        *,
        take: Callable[[int, str, bytes], None] | None = None,
        write: Callable[[list[Frame]], None] | None = None,
    ) -> Call:
        """Chunks ``indices`` of one dataset, as frames to ``take`` or ``write`` (see Call)."""
        return Call(
            "GET",
            rest.chunks(check_root(root), info.path),
            params={"i": rest.format_indices(indices)},
            batch=((info, indices),),
            take=take,
            write=write,
        )

    @staticmethod
    def file(
        root: str,
        info: DatasetInfo,
        head: Callable[[Mapping[str, str]], None],
        pour: Callable[[list[bytes]], None],
    ) -> Call:
        """The stored file of a dataset, its body to ``pour`` (see Call)."""
        return Call("GET", rest.file(check_root(root), info.path), head=head, pour=pour)

    @staticmethod
    def handoff(root: str, info: DatasetInfo) -> Call:
        """A ticket for the subscriber to write the file into ours (client/handoff.py)."""
        path = rest.handoff(check_root(root), info.path)
        return Call("POST", path, json_of, local=True)

    @staticmethod
    def chunks_of_many(
        root: str, infos: list[DatasetInfo], write: Callable[[list[Frame]], None]
    ) -> Call:
        """Every chunk of several datasets in one request, in order, to ``write``."""
        wanted = [{"path": info.path, "i": f"0-{info.nchunks - 1}"} for info in infos]
        return Call(
            "POST",
            rest.chunks_of_many(check_root(root)),
            json={"datasets": wanted},
            batch=tuple((info, range(info.nchunks)) for info in infos),
            write=write,
        )

    @staticmethod
    def events(root: str | None) -> Call:
        """The events stream (read line by line: see ``event_of``)."""
        params = {"root": check_root(root)} if root is not None else {}
        return Call("GET", f"{rest.API}/events", params=params, timeout=STREAM_TIMEOUT)

    @staticmethod
    def stats() -> Call:
        return Call("GET", f"{rest.API}/stats", json_of)

    @staticmethod
    def status() -> Call:
        return Call("GET", f"{rest.API}/status", json_of)

    @staticmethod
    def login(email: str | None, password: str | None) -> Call:
        """Trade an email and password for a token: decodes to the token answer."""
        return Call(
            "POST",
            f"{rest.API}/login",
            json_of,
            json={"email": email, "password": password},
            signed=False,
        )


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


def stream_ended(url: str) -> Unavailable:
    """The subscriber never ends the events stream on its own: it stopped."""
    return Unavailable(f"the subscriber at {url} closed the event stream")
