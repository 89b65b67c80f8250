"""Which signing key each root is bound to (caterva.protocol.seal): like ssh's known_hosts.

    keys given up front   --trust-file FILE (lines ``ROOT KEY``): always win
    keys pinned           in the state database: met on first use, or set by the admin with
                          ``caterva trust ROOT KEY`` (which is how a deliberate change is
                          accepted); kept when a root is unfollowed
    first use             the key the origin names in its own retained announcement (a broker
                          with logins confines that topic to the origin), else the key of the
                          first validly signed manifest met

A manifest signed by any other key is refused, with a message that says which key was
expected, which was offered, and how to accept it; the subscriber then tries the root's other
sources. On an open broker the first use is only as good as the broker: give keys up front
where that matters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from caterva.errors import BadRequest, KeyChanged, UntrustedSource
from caterva.protocol.names import check_root
from caterva.protocol.seal import Seal, key_bytes
from caterva.subscriber.state import State

log = logging.getLogger("caterva.subscriber")


def read_trust_file(path: str | Path) -> dict[str, str]:
    """root -> key from a file of ``ROOT KEY`` lines (# comments); BadRequest when malformed."""
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except OSError as exc:
        raise BadRequest(f"cannot read the trust file {path}: {exc.strerror or exc}") from exc
    keys = {}
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        try:
            root, key = words
            check_root(root)
            key_bytes(key)
        except (ValueError, BadRequest) as exc:
            raise BadRequest(f"{path}:{number}: expected `ROOT KEY` ({exc})") from None
        keys[root] = key
    return keys


class Trust:
    def __init__(
        self,
        state: State,
        configured: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.configured = dict(configured or {})
        self.clock = clock
        self._warned: set[tuple[str, str]] = set()  # (root, key offered): one log line each

    def key(self, root: str) -> tuple[str, str] | None:
        """(key, how it came to be trusted) for ``root``, or None before first use."""
        if root in self.configured:
            return self.configured[root], "trust file"
        pinned = self.state.trusted(root).get(root)
        return (pinned[0], pinned[1]) if pinned else None

    def check(self, root: str, seal: Seal, announced: str | None) -> None:
        """Accept ``seal``'s key for ``root`` (pinning it on first use) or raise."""
        bound = self.key(root)
        if bound is None:
            if announced is not None and announced != seal.key:
                raise UntrustedSource(
                    f"root {root!r} is signed by {seal.key}, but its origin "
                    f"announces the key {announced}"
                )
            how = "announced by its origin" if announced else "first use"
            self.state.trust(root, seal.key, how, self.clock())
            log.info("root %s: trusting key %s (%s)", root, seal.key, how)
            return
        key, how = bound
        if seal.key != key:
            message = (
                f"root {root!r} is signed by a key other than the one trusted ({how}): "
                f"trusted {key}, offered {seal.key}. If its publisher's key was replaced "
                f"on purpose, run `caterva trust {root} {seal.key}`"
            )
            if (root, seal.key) not in self._warned:
                self._warned.add((root, seal.key))
                log.warning("%s", message)
            raise KeyChanged(message, root=root, trusted=key, offered=seal.key)
