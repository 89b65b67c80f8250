"""``caterva trust``: which signing key each root is bound to, on this machine's subscriber.

Like ``caterva user``, it writes the subscriber's state database directly: whoever can write
that is the admin, and no HTTP route changes trust. The running subscriber reads the keys on
every manifest it verifies, so a change takes effect at its next resync, without a restart.
"""

# No `from __future__ import annotations` here: typer evaluates annotations at start-up.

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer

from caterva.cli.options import Json, emit, out

Statedir = Annotated[
    Optional[Path],
    typer.Option(
        "--statedir",
        metavar="DIR",
        help="The subscriber's state directory "
        "[default ~/.local/state/caterva/subscriber; env CATERVA_STATEDIR].",
    ),
]


def _open_state(flag: Optional[Path]):
    from caterva.config import statedir
    from caterva.subscriber.state import State

    return State(statedir(flag, "subscriber") / "state.db")


def trust(
    root: Annotated[Optional[str], typer.Argument(metavar="ROOT", help="A root name.")] = None,
    key: Annotated[
        Optional[str],
        typer.Argument(
            metavar="KEY",
            help="Its origin's signing key, ed25519:... (as `caterva pub` logs it "
            "and its /v1/health shows it).",
        ),
    ] = None,
    forget: Annotated[
        bool,
        typer.Option(
            "--forget", help="Forget ROOT's key: the next validly signed manifest is trusted."
        ),
    ] = False,
    statedir: Statedir = None,
    as_json: Json = False,
) -> None:
    """Show which signing key each root is bound to; `caterva trust ROOT KEY` binds ROOT to
    KEY (how a publisher's new key is accepted on purpose)."""
    import time

    from caterva.errors import BadRequest
    from caterva.protocol.names import check_root
    from caterva.protocol.seal import key_bytes

    state = _open_state(statedir)
    try:
        if root is not None:
            check_root(root)
            if forget == (key is not None):
                raise BadRequest("give ROOT and KEY to trust a key, or ROOT --forget")
            if forget:
                gone = state.distrust(root)
                out().print(
                    f"forgot the key of {root}" if gone else f"{root} had no key",
                    markup=False,
                    emoji=False,
                )
                return
            try:
                key_bytes(key)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
            state.trust(root, key, "set by the admin", time.time())
            out().print(f"{root} is bound to {key}", markup=False, emoji=False)
            return
        keys = state.trusted()
    finally:
        state.close()
    if as_json:
        emit(
            {
                "keys": [
                    {"root": r, "key": k, "how": how, "since": since}
                    for r, (k, how, since) in sorted(keys.items())
                ]
            }
        )
        return
    for r, (k, how, since) in sorted(keys.items()):
        when = datetime.fromtimestamp(since).strftime("%Y-%m-%d %H:%M")
        out().print(f"{r}  {k}  ({how}, {when})", markup=False, emoji=False)
    if not keys:
        out().print("no root is bound to a key yet (the first one met is trusted)")


def register(app: typer.Typer) -> None:
    app.command()(trust)
