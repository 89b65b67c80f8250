"""MQTT payloads: small JSON objects that say something exists or changed.

Every payload carries ``proto`` (the protocol number); see ``model`` for how they decode.
JSON only: nothing that arrives over the wire is ever evaluated or unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from caterva.protocol.model import Model
from caterva.protocol.names import check_path, check_root

MAX_MESSAGE = 8 << 20  # the largest MQTT payload decoded: a change listing ~1M chunks fits


@dataclass(frozen=True)
class Message(Model):
    """An MQTT payload: anyone on the broker may send one, so its size is bounded."""

    max_bytes: ClassVar[int | None] = MAX_MESSAGE


@dataclass(frozen=True)
class Status(Message):
    """Birth message and last will of a source (publisher or republishing subscriber)."""

    state: Literal["online", "offline"]
    session: str
    url: str | None = None


@dataclass(frozen=True)
class Announcement(Message):
    """A source says it serves ``root``: where, which version, and where the data came from."""

    root: str
    url: str
    session: str
    manifest_etag: str
    datasets: int
    origin: str  # pub_id of the publisher that owns the files
    hops: list[str] = field(default_factory=list)  # pub_ids from the origin to this source
    key: str | None = None  # the origin's signing key, in the origin's own announcement

    def __post_init__(self) -> None:
        check_root(self.root)


@dataclass(frozen=True)
class Change(Message):
    """One dataset of a root was created, updated or deleted at a source.

    ``seq`` counts the events of one root in one source session (1, 2, ...): a gap, or a new
    session, means events were missed and the reader must resync from the manifest. ``chunks``
    lists the indices whose digest changed; None means "the layout changed, refetch all".
    ``time`` (Unix seconds) is when the origin saw the change, passed on unchanged by mirrors:
    a subscriber measures its freshness lag from it. Optional: older peers neither send nor
    read it.
    """

    root: str
    path: str
    op: Literal["create", "update", "delete"]
    session: str
    seq: int
    manifest_etag: str
    etag: str | None = None
    chunks: list[int] | None = None
    time: float | None = None

    def __post_init__(self) -> None:
        check_root(self.root)
        check_path(self.path)


@dataclass(frozen=True)
class Discover(Message):
    """Ask every source to re-announce its roots (sent by subscribers at start)."""

    sender: str = ""
