"""numpy-style selections as text, for URLs and the CLI: ``0:10, ::2, -1, ...``.

``parse`` turns the text into a key (ints, slices, Ellipsis) without evaluating anything;
``format`` is its inverse. ``normalize`` resolves a key against a shape, ``part`` narrows a
normalized key to ranges of its result, and ``touched_chunks`` says which chunks (flat C-order
indices over the chunk grid) a normalized key reads.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import Any

from caterva.errors import BadSelection

Key = tuple[Any, ...]
_INT = re.compile(r"[+-]?\d{1,19}")
MAX_ITEMS = 32


def parse(text: str) -> Key:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text.strip():
        return ()
    if "[" in text or "]" in text:  # e.g. a[[1, 2]]: numpy's integer-array indexing
        raise BadSelection(
            f"list indexing is not supported (in {describe(text)}): use integers, slices and ..."
        )
    items = [item.strip() for item in text.split(",")]
    if items and items[-1] == "" and len(items) > 1:  # a trailing comma, as numpy allows
        items.pop()
    if len(items) > MAX_ITEMS:
        raise BadSelection(f"selection has more than {MAX_ITEMS} items")
    return tuple(_parse_item(item, text) for item in items)


def _parse_item(item: str, text: str) -> Any:
    if item == "...":
        return Ellipsis
    if _INT.fullmatch(item):
        return int(item)
    parts = item.split(":")
    if 2 <= len(parts) <= 3 and all(p.strip() == "" or _INT.fullmatch(p.strip()) for p in parts):
        bounds = [int(p) if p.strip() else None for p in parts]
        if len(bounds) == 3 and bounds[2] == 0:
            raise BadSelection(f"slice step cannot be zero in {describe(text)}")
        return slice(*bounds)
    raise BadSelection(f"cannot parse selection item {describe(item)} in {describe(text)}")


def format(key: Any) -> str:  # noqa: A001 - the inverse of parse
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for item in key:
        if item is Ellipsis:
            out.append("...")
        elif isinstance(item, slice):
            parts = [
                "" if v is None else str(_as_int(v)) for v in (item.start, item.stop, item.step)
            ]
            out.append(":".join(parts[:2]) + (f":{parts[2]}" if item.step is not None else ""))
        else:
            out.append(str(_as_int(item)))
    return ",".join(out)


def _as_int(value: Any) -> int:
    if isinstance(value, list):
        raise BadSelection("list indexing is not supported: use integers, slices and ...")
    try:
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise TypeError
        return value.__index__()
    except TypeError:  # e.g. an array: numpy arrays have __index__, for 0-d ints only
        raise BadSelection(
            f"only integers, slices and ... are supported, not {describe(value)}"
        ) from None


def describe(value: Any, limit: int = 60) -> str:
    """A value as an error shows it: an array by its shape and dtype (a boolean mask of a
    million elements is not printed), anything else by its repr, cut at ``limit``."""
    shape = getattr(value, "shape", None)
    if shape is not None and getattr(value, "ndim", 0) > 0:
        return f"an array of shape {tuple(shape)} and dtype {getattr(value, 'dtype', '?')}"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def normalize(key: Any, shape: tuple[int, ...] | list[int]) -> Key:
    """One int or slice (with resolved bounds) per dimension; raises BadSelection."""
    shape = tuple(shape)
    if not isinstance(key, tuple):
        key = (key,)
    if sum(item is Ellipsis for item in key) > 1:
        raise BadSelection("an index can only have a single ellipsis ('...')")
    at = next((i for i, item in enumerate(key) if item is Ellipsis), None)
    if at is not None:  # not `Ellipsis in key`: that compares arrays elementwise
        fill = len(shape) - (len(key) - 1)
        key = key[:at] + (slice(None),) * max(fill, 0) + key[at + 1 :]
    if len(key) > len(shape):
        raise BadSelection(f"too many indices: {len(key)} for {len(shape)} dimensions")
    key = key + (slice(None),) * (len(shape) - len(key))
    out: list[Any] = []
    for dim, (item, size) in enumerate(zip(key, shape)):
        if isinstance(item, slice):
            step = None if item.step is None else _as_int(item.step)
            if step == 0:
                raise BadSelection("slice step cannot be zero")
            start = None if item.start is None else _as_int(item.start)
            stop = None if item.stop is None else _as_int(item.stop)
            start, stop, step = slice(start, stop, step).indices(size)
            if not range(start, stop, step):
                out.append(slice(0, 0, 1))  # resolved bounds can be -1, which reads as "last"
            else:  # a negative step that runs past 0 ends at -1: same trap
                out.append(slice(start, stop if stop >= 0 else None, step))
        else:
            i = _as_int(item)
            if not -size <= i < size:
                raise BadSelection(f"index {i} is out of bounds for axis {dim} with size {size}")
            out.append(i % size)
    return tuple(out)


def is_scalar(key: Key, norm: Key) -> bool:
    """Does numpy answer ``key`` (``norm``, normalized) with a scalar, not a 0-d array? When
    every axis is indexed by an int, and no ``...`` was given (``a[0, ...]`` is 0-d)."""
    return not any(k is Ellipsis for k in key) and all(not isinstance(k, slice) for k in norm)


def _range(item: slice) -> range:
    return range(item.start, -1 if item.stop is None else item.stop, item.step)


def result_shape(key: Key) -> tuple[int, ...]:
    return tuple(len(_range(s)) for s in key if isinstance(s, slice))


def part(key: Key, ranges: Sequence[tuple[int, int]]) -> Key:
    """The normalized key of positions [start, stop) of each result axis of ``key`` (one range
    per slice, in order): ``original[part(key, ranges)]`` is ``original[key][the ranges]``."""
    out: list[Any] = []
    todo = iter(ranges)
    for item in key:
        if isinstance(item, int):
            out.append(item)
            continue
        start, stop = next(todo)
        r = _range(item)[start:stop]
        if not r:
            out.append(slice(0, 0, 1))
        else:  # a negative step that runs past 0 ends at None, as in normalize
            out.append(slice(r.start, r.stop if r.stop >= 0 else None, r.step))
    return tuple(out)


def touched_chunks(key: Key, chunks: list[int] | tuple[int, ...], grid: list[int]) -> list[int]:
    """Flat indices of the chunks a normalized key reads, ascending."""
    per_dim: list[list[int]] = []
    for item, c in zip(key, chunks):
        if isinstance(item, int):
            per_dim.append([item // c])
            continue
        r = _range(item)
        if not r:
            return []
        lo, hi = min(r[0], r[-1]), max(r[0], r[-1])
        if abs(item.step) < c:  # no chunk between lo and hi can be skipped
            per_dim.append(list(range(lo // c, hi // c + 1)))
        else:  # each selected index lands in its own chunk
            per_dim.append(sorted({i // c for i in r}))
    strides = [1] * len(grid)
    for d in range(len(grid) - 2, -1, -1):
        strides[d] = strides[d + 1] * grid[d + 1]
    return sorted(
        sum(c * s for c, s in zip(coords, strides)) for coords in itertools.product(*per_dim)
    )
