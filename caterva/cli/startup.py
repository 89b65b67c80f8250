"""Start-up without the garbage collector's wasted passes, and exit without the teardown.

Starting a command (importing typer, rich and httpx and our modules, making the client) creates
some 50,000 objects the cyclic GC tracks, nearly all of which live as long as the process. The
GC scanned them again and again while they piled up (64 passes during `caterva roots`), and
once more at exit, to free nothing: ~35 ms of the ~205 that command took.

At exit, the interpreter then frees every object and module one by one: 7 ms of a `caterva
roots`, 13 ms of a `caterva show` (numpy's). A client command holds nothing that needs it once
its output is written (its connection and files are closed by then), so the program leaves
at once after one (``one_shot`` and ``leave``); services, which hold state, exit normally.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_one_shot = False


@contextmanager
def long_lived() -> Iterator[None]:
    """For a block whose objects live as long as the process: no GC pass while it runs, and
    none scans its objects afterwards (they are frozen out of collections)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def one_shot() -> None:
    """This process runs a client command: ``leave`` may skip the interpreter's teardown."""
    global _one_shot
    _one_shot = True


def leave(code: object) -> None:
    """After a client command (``one_shot``): flush the output and exit with ``code`` now.
    Otherwise, or when the output cannot be flushed, return: the normal exit follows."""
    if not _one_shot or not (code is None or isinstance(code, int)):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the normal exit reports it
        return
    os._exit(code or 0)
