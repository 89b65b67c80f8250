"""The publisher's signing key and the seals of its manifests (see caterva.protocol.seal).

The key is made on the first start and kept in the state directory (``signing-key``, mode
0600, readable by this user only); the same key for the state directory's whole life is what
subscribers bind the root to, so losing it means every subscriber refuses the root until its
admin trusts the new key (``caterva trust``). Each new manifest etag gets the next version, kept
in the state store, so versions only grow across restarts.
"""

from __future__ import annotations

import base64
import logging
import threading
from pathlib import Path

from caterva import atomic
from caterva.errors import StateError
from caterva.protocol.seal import Seal, key_text, sign
from caterva.publisher.store import Store

log = logging.getLogger("caterva.publisher")

KEY_FILE = "signing-key"


def load_key(statedir: Path):
    """The Ed25519 private key of this state directory, made on first use."""
    # not cryptography's serialization module: it imports its SSH and PKCS#12 code (and bcrypt)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = statedir / KEY_FILE
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        private = Ed25519PrivateKey.generate()
        raw = private.private_bytes_raw()
        if not atomic.write(
            path, base64.urlsafe_b64encode(raw).decode() + "\n", mode=0o600, keep=True
        ):
            return load_key(statedir)  # made by another process meanwhile: that one
        log.info("made a new signing key in %s", path)
        return private
    except OSError as exc:
        raise StateError(f"cannot read the signing key {path}: {exc.strerror or exc}") from exc
    try:
        return Ed25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(text))
    except ValueError:
        raise StateError(
            f"{path} does not hold an Ed25519 key (restore it from a backup, or "
            "remove it to make a new one that subscribers must trust again)"
        ) from None


class Sealer:
    """``sealer(manifest_etag)``: the seal of that manifest, signed once per new etag."""

    def __init__(self, private, store: Store, *, root: str, origin: str) -> None:
        self._private = private
        self._store = store
        self.root, self.origin = root, origin
        self.key = key_text(private.public_key().public_bytes_raw())
        self._last = store.seal()
        self._lock = threading.Lock()  # manifest requests run in worker threads

    def __call__(self, manifest_etag: str) -> Seal:
        with self._lock:
            last = self._last
            if last is not None and (last.manifest_etag, last.key, last.root, last.origin) == (
                manifest_etag,
                self.key,
                self.root,
                self.origin,
            ):
                return last
            seal = sign(
                self._private,
                root=self.root,
                origin=self.origin,
                version=last.version + 1 if last else 1,
                manifest_etag=manifest_etag,
            )
            self._store.save_seal(seal)
            self._last = seal
            return seal
