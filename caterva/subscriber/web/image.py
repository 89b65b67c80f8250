"""A numeric 2-D plane as a PNG: robust scaling, a perceptual colormap, and a PNG encoder of a
few lines (zlib + struct), so the page needs no imaging package.

Scaling maps the 2nd..98th percentiles of the finite values onto the colormap, so a few
outliers (a hot pixel, a fill value) do not flatten the rest; NaN and infinities are grey.
The colormap runs through five anchors of viridis interpolated in OKLab, a space where equal
steps look equal, so lightness rises evenly from dark violet to yellow and the map reads the
same in greyscale and to colour-blind eyes.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from caterva.errors import BadSelection

ANCHORS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")  # viridis, dark to light
LOW, HIGH = 2, 98  # percentiles mapped to the colormap's ends
NOT_FINITE = (128, 128, 128)

# linear sRGB -> LMS cone responses, and cube-rooted LMS -> OKLab (Ottosson, 2020)
_TO_LMS = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ]
)
_TO_LAB = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ]
)


def _to_oklab(srgb: np.ndarray) -> np.ndarray:
    c = srgb / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return np.cbrt(linear @ _TO_LMS.T) @ _TO_LAB.T


def _from_oklab(lab: np.ndarray) -> np.ndarray:
    linear = (lab @ np.linalg.inv(_TO_LAB).T) ** 3 @ np.linalg.inv(_TO_LMS).T
    linear = np.clip(linear, 0.0, 1.0)
    c = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.round(c * 255.0).astype(np.uint8)


def colormap(anchors: tuple[str, ...] = ANCHORS, size: int = 256) -> np.ndarray:
    """A (size, 3) uint8 table through ``anchors`` (``#rrggbb``), evenly spaced in OKLab."""
    rgb = np.array([[int(a[i : i + 2], 16) for i in (1, 3, 5)] for a in anchors], float)
    lab = _to_oklab(rgb)
    at = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, size)
    table = np.stack([np.interp(t, at, lab[:, k]) for k in range(3)], axis=1)
    return _from_oklab(table)


TABLE = colormap()


def colour(plane: np.ndarray) -> np.ndarray:
    """A 2-D numeric array as (h, w, 3) uint8 RGB, scaled by its percentiles."""
    if plane.ndim != 2 or plane.dtype.kind not in "biuf":
        raise BadSelection(f"an image needs a 2-D numeric plane, not {plane.dtype} {plane.shape}")
    values = plane.astype(np.float64)
    finite = np.isfinite(values)
    if finite.any():
        lo, hi = np.percentile(values[finite], [LOW, HIGH])
    else:
        lo = hi = 0.0
    span = hi - lo if hi > lo else 1.0  # a flat plane is the colormap's dark end
    with np.errstate(invalid="ignore"):
        scaled = np.clip((values - lo) / span, 0.0, 1.0) * (len(TABLE) - 1)
    index = np.where(finite, np.round(scaled), 0).astype(np.intp)
    rgb = TABLE[index]
    rgb[~finite] = NOT_FINITE
    return rgb


def encode_png(rgb: np.ndarray) -> bytes:
    """(h, w, 3) uint8 as an 8-bit RGB PNG: each row with filter byte 0, zlib-deflated."""
    height, width, _ = rgb.shape
    if not height or not width:
        raise BadSelection("an image of an empty plane: select at least one row and column")
    rows = np.zeros((height, width * 3 + 1), np.uint8)
    rows[:, 1:] = rgb.reshape(height, width * 3)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)),
            chunk(b"IEND", b""),
        )
    )
