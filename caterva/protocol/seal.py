"""Signed roots: the origin publisher's Ed25519 signature binds a root's content to its key.

    Seal = {root, origin, key, version, manifest_etag} + signature over exactly those

The manifest etag is a hash of every dataset's (path, etag), and a dataset's etag a hash of
its layout and chunk digests, and each chunk is verified against its digest: so one signature
covers every byte a reader can get. A mirror passes the origin's seal on unchanged; whatever a
source serves, ``verify_manifest`` recomputes the etags from the content it got and checks the
signature, so a mirror can withhold data but never forge or alter it. ``version`` only grows
(the origin counts its sealed manifests), so an old, correctly signed manifest cannot be
replayed as new. Which key a root must be signed with is the subscriber's business (trust on
first use, or keys given up front): see caterva/subscriber/trust.py.

Keys travel as text, ``ed25519:`` and the 32 raw bytes in URL-safe base64.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass

from caterva.errors import UntrustedSource
from caterva.protocol.model import Model
from caterva.protocol.names import check_root

KEY_PREFIX = "ed25519:"


def key_text(raw: bytes) -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def key_bytes(text: str) -> bytes:
    """The 32 raw bytes of a key in text form; ValueError when it is not one."""
    if not isinstance(text, str) or not text.startswith(KEY_PREFIX):
        raise ValueError(f"a signing key looks like {KEY_PREFIX}<43 characters>")
    body = text[len(KEY_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        raw = b""
    if len(raw) != 32 or key_text(raw) != text:
        raise ValueError(f"{text[:60]!r} is not an Ed25519 public key")
    return raw


@dataclass(frozen=True)
class Seal(Model):
    root: str
    origin: str  # pub_id of the publisher that owns the files
    key: str  # its public key, as text
    version: int  # counts the origin's sealed manifests: never goes back
    manifest_etag: str
    signature: str  # URL-safe base64 of the Ed25519 signature of statement()

    def __post_init__(self) -> None:
        check_root(self.root)

    def statement(self) -> bytes:
        """The bytes signed: every field but the signature, in a fixed order."""
        fields = [
            "caterva-seal",
            1,
            self.root,
            self.origin,
            self.key,
            self.version,
            self.manifest_etag,
        ]
        return json.dumps(fields, separators=(",", ":")).encode()

    def verify(self) -> None:
        """UntrustedSource unless the signature is the key's over this statement."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            public = Ed25519PublicKey.from_public_bytes(key_bytes(self.key))
            public.verify(base64.urlsafe_b64decode(self.signature + "=="), self.statement())
        except (InvalidSignature, ValueError):
            raise UntrustedSource(f"the signature of root {self.root!r} is not valid") from None


def sign(private, *, root: str, origin: str, version: int, manifest_etag: str) -> Seal:
    """A seal made with ``private`` (an Ed25519PrivateKey)."""
    raw = private.public_key().public_bytes_raw()
    unsigned = Seal(
        root=root,
        origin=origin,
        key=key_text(raw),
        version=version,
        manifest_etag=manifest_etag,
        signature="",
    )
    signature = base64.urlsafe_b64encode(private.sign(unsigned.statement())).decode()
    return Seal(**{**unsigned.__dict__, "signature": signature.rstrip("=")})


def verify_manifest(manifest, known: Mapping[str, object] | None = None) -> Seal:
    """The seal of ``manifest`` (a Manifest), after checking that it is signed, that it seals
    this very content (every etag recomputed from what was received, but for the datasets of
    ``known`` (path -> DatasetInfo verified before) it holds as they were) and that the
    signature holds. Which key it must be is for the caller to decide."""
    known = known or {}
    seal = manifest.seal
    if seal is None:
        raise UntrustedSource(f"the manifest of root {manifest.root!r} is not signed")
    if seal.root != manifest.root:
        raise UntrustedSource(
            f"a manifest of root {manifest.root!r} carries the seal of root {seal.root!r}"
        )
    for info in manifest.datasets:
        if known.get(info.path) is not info and info.content_etag() != info.etag:
            raise UntrustedSource(
                f"{manifest.root}/{info.path}: its etag does not match its content"
            )
    return check_seal(manifest.root, seal, manifest.etag, manifest.content_etag())


def check_seal(root: str, seal: Seal, etag: str, computed: str) -> Seal:
    """``seal`` after checking that it signs the manifest ``etag``, which is ``computed``
    from the content received."""
    if computed != etag or computed != seal.manifest_etag:
        raise UntrustedSource(f"the manifest of root {root!r} is not the one its origin signed")
    seal.verify()
    return seal
