"""How `caterva show` prints an array: numpy's own text, summarised when large (the first and
last EDGEITEMS of each long axis, "..." between), in one place for both sides. The subscriber
prints a selection for the CLI (``GET /v1/roots/{root}/printed/{path}``), so a one-shot
`caterva show` needs neither numpy (~40 ms to import) nor the values (16 MiB for 1/64 of a
1 GiB cube, of which it prints a few hundred); the CLI prints by itself what the subscriber
declines (``fits``).

numpy is imported by ``text`` only: the CLI imports this module without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

THRESHOLD = 1000  # an array of more values than this is summarised
EDGEITEMS = 4  # values kept at each end of a summarised axis
MIN_WIDTH = 40  # a narrower console still gets lines of this many characters
MAX_WIDTH = 1 << 16  # the widest line a subscriber is asked for
# What a subscriber prints for a client, at most: numpy's printing is slow per value (~2.5 us
# for a float, ~0.1 s for the 8**5 values of a summarised 5-D selection) and its text several
# times the values' bytes (bytes strings as escapes).
MAX_VALUES = 8**5
MAX_BYTES = 1 << 20


def edges(shape: Sequence[int]) -> list[list[tuple[int, int]]] | None:
    """Per axis, the [start, stop) ranges of positions numpy prints of an array of ``shape``
    when it summarises it (the ends of each axis longer than 2 * EDGEITEMS); None when it
    prints every value. numpy reads no other value, not even to choose a format."""
    if math.prod(shape) <= THRESHOLD:
        return None
    return [[(0, n)] if n <= 2 * EDGEITEMS else [(0, EDGEITEMS), (n - EDGEITEMS, n)] for n in shape]


def printed_values(shape: Sequence[int]) -> int:
    """How many values numpy prints of an array of ``shape`` (after summarising)."""
    ranges = edges(shape)
    if ranges is None:
        return math.prod(shape)
    return math.prod(sum(b - a for a, b in axis) for axis in ranges)


def fits(shape: Sequence[int], itemsize: int) -> bool:
    """Whether a subscriber prints an array of ``shape`` and ``itemsize`` for a client."""
    count = printed_values(shape)
    return count <= MAX_VALUES and count * itemsize <= MAX_BYTES


def text(value: Any, width: int) -> str:
    """numpy's text of ``value`` for a console ``width`` characters wide."""
    import numpy as np

    return np.array2string(
        np.asarray(value),
        max_line_width=max(width, MIN_WIDTH),
        threshold=THRESHOLD,
        edgeitems=EDGEITEMS,
    )
