"""A manifest as a subscriber keeps it: per dataset its etag and its JSON text, not objects.

A root of 100,000 datasets arrives as one 45 MB JSON body. Decoding it into DatasetInfos,
then encoding each again to store it, cost seconds and hundreds of MiB; instead each dataset
is reduced to its canonical JSON once, which gives both its etag (checked against the one
sent) and the text kept (``caterva.protocol.metadata.info_of`` decodes it when it is used).

    parse(body)               -> Listing (a full manifest, or a delta when it has ``since``)
    listing.verify(computed)  -> the seal, once the manifest etag computed from the datasets
                                 (caterva.protocol.rootetag for a delta) is the one signed
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from caterva.errors import CatervaError, InvalidName, ProtocolError, UntrustedSource
from caterva.protocol.metadata import content_json, etag_of
from caterva.protocol.names import check_path, check_root
from caterva.protocol.seal import Seal, check_seal

Listed = tuple[str, str]  # (etag, info JSON text) of one dataset


@dataclass(frozen=True)
class Listing:
    root: str
    etag: str
    seal: Seal | None
    datasets: dict[str, Listed]  # path -> (etag, text): every dataset, or those of a delta
    since: str | None = None  # a delta from the manifest with this etag
    removed: list[str] = field(default_factory=list)

    @property
    def changes(self) -> dict[str, str | None]:
        """path -> etag of each dataset listed, and None for each removed one."""
        out: dict[str, str | None] = dict.fromkeys(self.removed)
        out.update((p, etag) for p, (etag, _) in self.datasets.items())
        return out

    def verify(self, computed: str) -> Seal:
        """The seal, after checking it signs exactly the root this gives, whose manifest etag
        the caller ``computed`` (``manifest_etag`` of this manifest's datasets, or for a
        delta of the root at ``since`` with ``changes`` made): every dataset's etag was
        checked against its content by ``parse``."""
        if self.seal is None:
            raise UntrustedSource(f"the manifest of root {self.root!r} is not signed")
        if self.seal.root != self.root:
            raise UntrustedSource(
                f"a manifest of root {self.root!r} carries the seal of root {self.seal.root!r}"
            )
        return check_seal(self.root, self.seal, self.etag, computed)


def parse(body: bytes) -> Listing:
    """A manifest or delta body as sent by a source (ProtocolError if it is not one;
    UntrustedSource if a dataset's etag does not match its content)."""
    datasets: dict[str, Listed] = {}
    count = 0

    def each(item: Any) -> None:
        nonlocal count
        path, etag, text = _described(item)
        datasets[path] = (etag, text)
        count += 1

    try:
        obj = _scan(body.decode(), each)
        root = check_root(obj["root"])
        since = obj.get("since")
        listing = Listing(
            root=root,
            etag=_text(obj["etag"]),
            seal=None if obj.get("seal") is None else Seal.from_dict(obj["seal"]),
            datasets=datasets,
            since=None if since is None else _text(since),
            removed=[check_path(_text(p)) for p in obj.get("removed", [])],
        )
    except InvalidName as exc:  # a root or path no source may send
        raise ProtocolError(f"a manifest with an invalid name: {exc}") from None
    except (ValueError, RecursionError) as exc:  # JSON errors, UnicodeDecodeError among them
        if isinstance(exc, CatervaError):
            raise
        raise ProtocolError(f"source sent invalid JSON: {exc}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"a manifest of the wrong shape ({exc!r})") from None
    if len(datasets) != count:
        raise ProtocolError(f"a manifest of root {root!r} lists a dataset twice")
    return listing


_DECODE = json.JSONDecoder().raw_decode
_SPACE = re.compile(r"[ \t\n\r]*")


def _scan(text: str, each: Callable[[Any], None]) -> dict[str, Any]:
    """The members of the JSON object ``text``, but the items of its "datasets" array go to
    ``each`` one at a time as they are decoded: 100,000 of them at once are two million
    objects, a second of garbage collection and hundreds of MiB."""

    def skip(i: int) -> int:
        return _SPACE.match(text, i).end()

    def expect(i: int, chars: str) -> tuple[str, int]:
        i = skip(i)
        if text[i : i + 1] not in tuple(chars):
            raise ValueError(f"expected one of {chars!r} at {i}")
        return text[i], skip(i + 1)

    members: dict[str, Any] = {}
    _, i = expect(0, "{")
    if text[i : i + 1] == "}":
        return members
    while True:
        key, i = _DECODE(text, i)
        if not isinstance(key, str):
            raise ValueError(f"expected a member name at {i}")
        _, i = expect(i, ":")
        if key == "datasets" and text[i : i + 1] == "[":
            members[key] = []
            i = skip(i + 1)
            end = text[i : i + 1] == "]"
            i += end
            while not end:
                item, i = _DECODE(text, i)
                each(item)
                close, i = expect(i, ",]")
                end = close == "]"
        else:
            members[key], i = _DECODE(text, i)
        close, i = expect(i, ",}")
        if close == "}":
            if i != len(text):
                raise ValueError(f"extra data at {i}")
            return members


def _described(item: dict) -> tuple[str, str, str]:
    """(path, etag, text) of one dataset as sent: its etag recomputed from its content as
    DatasetInfo.content_etag does, and the text it is kept as."""
    path = check_path(_text(item["path"]))
    canonical = content_json(item)
    etag = etag_of(canonical)
    if item.get("etag", "") not in ("", etag):
        raise UntrustedSource(f"{path}: its etag does not match its content")
    rest = {"etag": etag} | {k: item[k] for k in ("size", "mtime") if k in item}
    return path, etag, f"{canonical[:-1]},{json.dumps(rest, separators=(',', ':'))[1:]}"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value
