"""Start-up without the garbage collector's wasted passes.

Starting a command (importing typer, rich, httpx and our modules, making the client) creates
some 50,000 objects the cyclic GC tracks, nearly all of which live as long as the process. The
GC scanned them again and again while they piled up (64 passes during `caterva roots`), and
once more at exit, to free nothing: ~35 ms of the ~205 that command took.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


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
