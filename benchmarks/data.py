"""The benchmark's datasets, made once per parameter set and kept in the work dir.

    big/smooth.b2nd   float64 cube, a smooth field plus quantised noise (compresses ~5x)
    big/noise.b2nd    uint64 cube of random bits (incompressible)
    many/gNN/aNNNN.b2nd   small float64 arrays, one chunk each

At scale 1 each cube is 512**3 * 8 bytes = 1 GiB. Every cube has 8 x 8 x 8 chunks, so a
selection of a quarter of each axis touches 2 x 2 x 2 = 8 chunks and 1/64 of the array.
Cubes are written one slab of chunks at a time: memory stays at one slab whatever the scale.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import blosc2
import numpy as np

FULL_SIDE = 512  # 512**3 float64 = 1 GiB
GRID = 8  # chunks per axis
SMALL_SHAPE = (100, 100)  # one 80 kB chunk per small dataset
VERSION = 1  # bump when what make() writes changes: cached data is rebuilt


def side_for(scale: float) -> int:
    """Cube side for ``scale`` (1 = 1 GiB), a multiple of GRID so chunks tile it exactly."""
    side = round(FULL_SIDE * scale ** (1 / 3) / GRID) * GRID
    return max(side, 2 * GRID)


@dataclass(frozen=True)
class Layout:
    """Where the data of one parameter set lives."""

    base: Path
    side: int
    datasets: int

    @property
    def big(self) -> Path:
        return self.base / "big"

    @property
    def many(self) -> Path:
        return self.base / "many"

    @property
    def selection(self) -> str:
        """A selection touching 8 chunks (1/64 of a cube), in `caterva show` syntax."""
        q = self.side // 4
        return f"{q}:{2 * q}, {q}:{2 * q}, {q}:{2 * q}"

    @property
    def key(self) -> tuple[slice, ...]:
        q = self.side // 4
        return (slice(q, 2 * q),) * 3

    def small_path(self, i: int) -> str:
        return f"g{i // 100:02d}/a{i:04d}.b2nd"


def make(workdir: Path, side: int, datasets: int, log=print) -> Layout:
    """The data for (side, datasets), reused when a previous run made it already."""
    layout = Layout(workdir / f"data-{side}-{datasets}", side, datasets)
    marker = layout.base / "made.json"
    wanted = {"version": VERSION, **{k: v for k, v in asdict(layout).items() if k != "base"}}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return layout
    shutil.rmtree(layout.base, ignore_errors=True)
    layout.big.mkdir(parents=True)
    log(f"making data in {layout.base} (cube side {side}, {datasets} small datasets)")
    write_smooth(layout.big / "smooth.b2nd", side)
    write_noise(layout.big / "noise.b2nd", side)
    write_many(layout, datasets)
    marker.write_text(json.dumps(wanted))
    return layout


def _cube(path: Path, side: int, dtype) -> blosc2.NDArray:
    c = side // GRID
    return blosc2.empty((side,) * 3, dtype=dtype, chunks=(c,) * 3, urlpath=str(path), mode="w")


def smooth_slab(z0: int, z1: int, side: int, rng: np.random.Generator) -> np.ndarray:
    axis = np.linspace(0, 4 * np.pi, side)
    z = axis[z0:z1, None, None]
    y = axis[None, :, None]
    x = axis[None, None, :]
    field = np.sin(x) * np.cos(y) + 0.5 * np.sin(z + x)
    field = field + rng.normal(0.0, 0.01, field.shape)
    # measurement-like precision: the low mantissa bits are zero, so it compresses
    return np.round(field * 4096) / 4096


def write_smooth(path: Path, side: int) -> None:
    arr = _cube(path, side, np.float64)
    rng = np.random.default_rng(1)
    step = side // GRID
    for z0 in range(0, side, step):
        arr[z0 : z0 + step] = smooth_slab(z0, z0 + step, side, rng)


def write_noise(path: Path, side: int) -> None:
    arr = _cube(path, side, np.uint64)
    rng = np.random.default_rng(2)
    step = side // GRID
    for z0 in range(0, side, step):
        arr[z0 : z0 + step] = rng.integers(0, 2**64, (step, side, side), dtype=np.uint64)


def write_many(layout: Layout, count: int) -> None:
    rng = np.random.default_rng(3)
    for i in range(count):
        write_small(layout.many / layout.small_path(i), rng.normal(size=SMALL_SHAPE))


def write_small(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blosc2.asarray(values, chunks=values.shape, urlpath=str(path), mode="w")


def same_dataset(a: Path, b: Path, deserialize: str = "safe") -> bool:
    """Same layout and the same compressed chunks (so the same values), read chunk by chunk.
    ``deserialize="full"`` opens a copy made by Caterva2, whose proxy metadata blosc2 refuses
    by default (only files of this run, written from our own originals)."""
    x = blosc2.open(str(a), mode="r")
    y = blosc2.open(str(b), mode="r", deserialize=deserialize)
    if (x.shape, x.dtype, x.chunks, x.blocks) != (y.shape, y.dtype, y.chunks, y.blocks):
        return False
    sx, sy = x.schunk, y.schunk
    if sx.nchunks != sy.nchunks:
        return False
    return all(sx.get_chunk(i) == sy.get_chunk(i) for i in range(sx.nchunks))


def selected_chunks(layout: Layout) -> list[bytes]:
    """The stored chunks of the smooth cube that ``layout.key`` touches (8 of them)."""
    arr = blosc2.open(str(layout.big / "smooth.b2nd"), mode="r")
    c = arr.chunks[0]
    axis = range(layout.key[0].start // c, (layout.key[0].stop - 1) // c + 1)
    return [
        arr.schunk.get_chunk((i * GRID + j) * GRID + k) for i in axis for j in axis for k in axis
    ]
