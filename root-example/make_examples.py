#!/usr/bin/env python
"""Write caterva's demo root: small Blosc2 datasets plus plain files, the same bytes every run.

    python root-example/make_examples.py            rewrite the committed files beside it
    python root-example/make_examples.py --big      ... and also big/ (several MB, gitignored)
    python root-example/make_examples.py --check    exit 1 unless the files on disk are exactly
                                                    what it writes (with --big: big/ too)
    python root-example/make_examples.py --out DIR  write (or check) DIR instead

Why the output is reproducible byte for byte:
- each dataset draws from its own numpy Generator, seeded from its path, so adding or reordering
  datasets never changes the others;
- float values are rounded to a power-of-two grid, so a last-bit difference between math
  libraries (or SIMD paths) on another machine cannot change a stored value (it also helps
  compression, like a sensor's finite resolution);
- chunks and blocks are always given, never left to blosc2's cache-size heuristics;
- thread counts are pinned to one, whatever the machine or BLOSC_NTHREADS says: the frame
  header records them (the default is the number of cores), and with several compression
  threads c-blosc2 places a chunk's blocks in the order the threads finish (same values,
  different bytes).
The bytes still depend on the blosc2 build (codec versions): after upgrading blosc2, rerun the
script if ``--check`` fails and commit the result.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import os
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import blosc2
import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20240917
# files in the example directory that are written by hand, not by this script
HAND_WRITTEN = {"README.md", "make_examples.py"}
BIG_DIR = "big"

Codec, Filter = blosc2.Codec, blosc2.Filter
# the frame header records the thread counts; the default is the number of cores
ONE_THREAD = blosc2.DParams(nthreads=1)


def rng_for(path: str) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(path.encode())])


def quantize(x: np.ndarray, step: float) -> np.ndarray:
    """Round to a multiple of ``step`` (a power of two, so the result is exact in binary)."""
    return np.round(np.asarray(x, dtype=np.float64) / step) * step


def grid(*axes: np.ndarray) -> list[np.ndarray]:
    return np.meshgrid(*axes, indexing="ij")


# --- the kinds of example file ------------------------------------------------------------


@dataclass(frozen=True)
class Array:
    """A ``.b2nd`` NDArray."""

    path: str
    make: Callable[[np.random.Generator], np.ndarray]
    chunks: tuple[int, ...]
    blocks: tuple[int, ...]
    codec: blosc2.Codec
    filters: tuple[blosc2.Filter, ...]
    clevel: int = 5
    vlmeta: dict = field(default_factory=dict)

    def write(self, target: Path) -> None:
        data = self.make(rng_for(self.path))
        cparams = blosc2.CParams(
            codec=self.codec, clevel=self.clevel, filters=list(self.filters), nthreads=1
        )
        array = blosc2.asarray(
            data, urlpath=str(target), mode="w", contiguous=True,
            chunks=self.chunks, blocks=self.blocks, cparams=cparams, dparams=ONE_THREAD,
        )  # fmt: skip
        for key, value in self.vlmeta.items():
            array.vlmeta[key] = value


@dataclass(frozen=True)
class Frame:
    """A ``.b2frame`` SChunk holding the raw bytes of a 1-D array."""

    path: str
    make: Callable[[np.random.Generator], np.ndarray]
    chunksize: int  # bytes
    blocksize: int  # bytes
    codec: blosc2.Codec
    filters: tuple[blosc2.Filter, ...]
    vlmeta: dict = field(default_factory=dict)

    def write(self, target: Path) -> None:
        data = self.make(rng_for(self.path))
        cparams = blosc2.CParams(
            codec=self.codec, filters=list(self.filters), typesize=data.dtype.itemsize,
            blocksize=self.blocksize, nthreads=1,
        )  # fmt: skip
        schunk = blosc2.SChunk(
            chunksize=self.chunksize, data=data.tobytes(), urlpath=str(target), mode="w",
            cparams=cparams, dparams=ONE_THREAD,
        )  # fmt: skip
        for key, value in {"dtype": data.dtype.str, **self.vlmeta}.items():
            schunk.vlmeta[key] = value


@dataclass(frozen=True)
class Text:
    """A plain text file."""

    path: str
    make: Callable[[], str]

    def write(self, target: Path) -> None:
        target.write_bytes(self.make().encode())


@dataclass(frozen=True)
class NetCDF:
    """A NetCDF-4-style HDF5 file (h5py, hdf5plugin): coordinate variables as dimension
    scales, CF attributes, and one variable per storage caterva maps: Blosc2-filtered chunks
    (passed through), gzip chunks (recompressed) and contiguous (cut into chunks).
    Byte-reproducible: no timestamps (track_times=False), fixed chunks and filter settings,
    one Blosc2 thread (see single_threaded)."""

    path: str
    make: Callable[[np.random.Generator], dict[str, np.ndarray]]

    def write(self, target: Path) -> None:
        import h5py
        import hdf5plugin

        v = self.make(rng_for(self.path))
        with h5py.File(target, "w") as f:
            f.attrs.update({"Conventions": "CF-1.8", "title": "synthetic coastal buoy grid"})
            for name, units in (
                ("time", "days since 2024-01-01"),
                ("lat", "degrees_north"),
                ("lon", "degrees_east"),
            ):
                scale = f.create_dataset(name, data=v[name], track_times=False)
                scale.attrs["units"] = units
                scale.make_scale(name)
            sst = f.create_dataset(
                "sst",
                data=v["sst"],
                chunks=(8, 10, 16),
                track_times=False,
                **hdf5plugin.Blosc2(cname="zstd", clevel=5, filters=hdf5plugin.Blosc2.SHUFFLE),
            )
            wind = f.create_dataset(
                "wind_speed",
                data=v["wind_speed"],
                chunks=(6, 8, 8),
                compression="gzip",
                compression_opts=6,
                shuffle=True,
                track_times=False,
            )
            mask = f.create_dataset("land_mask", data=v["land_mask"], track_times=False)
            sst.attrs.update({"units": "degC", "long_name": "sea surface temperature"})
            wind.attrs.update(
                {
                    "units": "m s-1",
                    "long_name": "wind speed at 10 m",
                    "scale_factor": np.float32(0.01),
                    "add_offset": np.float32(0),
                }
            )
            mask.attrs["flag_meanings"] = "sea land"
            for var in (sst, wind):
                for axis, name in enumerate(("time", "lat", "lon")):
                    var.dims[axis].attach_scale(f[name])
            for axis, name in enumerate(("lat", "lon")):
                mask.dims[axis].attach_scale(f[name])


# --- content ------------------------------------------------------------------------------

README_TXT = """\
Demo root "example" for caterva
===============================

A small made-up observing network: weather stations, a regional climate grid,
an ocean profile grid, a terrain model and a vibration sensor. Every value is
synthetic (smooth fields plus seeded noise), written by make_examples.py.

stations.csv                    station list (plain CSV)
stations/names.b2nd             station names, unicode strings, 1-D
stations/qc_flags.b2nd          daily quality flags per station, byte strings, 2-D
stations/observations.b2nd      hourly records (int, float, 2-vector wind), 1-D
timeseries/visitor_counts.b2nd  hourly visitor counts for 2024, int32, 1-D
signals/calibration.b2nd        vibration sensor gain, 0-d, metadata in vlmeta
signals/vibration.b2frame       raw int16 sensor samples in a Blosc2 SChunk
signals/chirp_spectrogram.b2nd  short-time Fourier transform of a chirp, complex64, 2-D
images/terrain.b2nd             elevation model in metres, float32, 2-D
images/thumbnail.b2nd           small RGB picture, uint8, 3-D
climate/2024/temperature.b2nd   semi-monthly 2 m air temperature, float32, 3-D
ocean/2024/salinity.b2nd        monthly salinity profiles, packed int16, 4-D
ocean/buoys.nc                  NetCDF-4 (HDF5) file: sea surface temperature, wind, mask

Units and descriptions are in each dataset's vlmeta.
"""

SYLLABLES_A = ["Alt", "Ber", "Cór", "Dal", "Eis", "Fjǿr", "Gran", "Høy", "Izar", "Jök",
               "Kro", "Lün", "Mår", "Nev", "Ost", "Pré"]  # fmt: skip
SYLLABLES_B = ["dorf", "vik", "ova", "heim", "ière", "burg", "ås", "ul", "sund", "ëck"]
N_STATIONS = 40


@functools.cache
def stations() -> list[dict]:
    """The station list shared by stations.csv and stations/names.b2nd."""
    rng = rng_for("stations")
    pairs = [a + b for a in SYLLABLES_A for b in SYLLABLES_B]
    names = [pairs[i] for i in rng.permutation(len(pairs))[:N_STATIONS]]
    lat = quantize(rng.uniform(36, 54, N_STATIONS), 1 / 1024)
    lon = quantize(rng.uniform(-9, 19, N_STATIONS), 1 / 1024)
    elevation = np.round(rng.gamma(2.0, 250.0, N_STATIONS)).astype(int)
    established = rng.integers(1952, 2020, N_STATIONS)
    return [
        {"station_id": i + 1, "name": names[i], "latitude": f"{lat[i]:.4f}",
         "longitude": f"{lon[i]:.4f}", "elevation_m": int(elevation[i]),
         "established": int(established[i])}
        for i in range(N_STATIONS)
    ]  # fmt: skip


def stations_csv() -> str:
    out = io.StringIO()
    rows = stations()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def station_names(rng: np.random.Generator) -> np.ndarray:
    return np.array([s["name"] for s in stations()], dtype="U16")


def qc_flags(rng: np.random.Generator) -> np.ndarray:
    flags = np.array([b"OK", b"MISS", b"SPIK", b"DRFT"], dtype="S4")
    return rng.choice(flags, size=(366, N_STATIONS), p=[0.93, 0.04, 0.02, 0.01])


OBSERVATION = np.dtype(
    [("station", "<i2"), ("time", "<i8"), ("temperature", "<f4"), ("wind", "<f4", (2,))]
)


def observations(rng: np.random.Generator) -> np.ndarray:
    n = 1500
    records = np.zeros(n, dtype=OBSERVATION)
    records["station"] = rng.integers(1, N_STATIONS + 1, n)
    start = 1704067200  # 2024-01-01T00:00:00Z
    records["time"] = start + np.sort(rng.integers(0, 31 * 86400, n))
    hour = (records["time"] - start) / 3600
    records["temperature"] = quantize(
        4 + 5 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 1.5, n), 1 / 16
    )
    records["wind"] = quantize(rng.normal([3.0, -1.0], 2.5, (n, 2)), 1 / 16)
    return records


def visitor_counts(rng: np.random.Generator) -> np.ndarray:
    hour = np.arange(366 * 24)
    daily = np.clip(np.sin(2 * np.pi * (hour % 24 - 8) / 24 * 1.5), 0, None)
    weekend = ((hour // 24) % 7 >= 5) * 0.6 + 1  # 2024-01-01 was a Monday
    seasonal = 1 + 0.5 * np.sin(2 * np.pi * (hour / (366 * 24) - 0.3))
    rate = 2 + 60 * daily * weekend * seasonal
    return rng.poisson(rate).astype(np.int32)


def calibration(rng: np.random.Generator) -> np.ndarray:
    return np.array(1.00421875)  # a float64 scalar, exact in binary


def vibration(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(60_000) / 1000.0  # one minute at 1 kHz
    hum = 900 * np.sin(2 * np.pi * 50 * t) + 300 * np.sin(2 * np.pi * 120 * t + 0.4)
    bursts = 2500 * np.exp(-(((t % 15) - 7.5) ** 2) / 0.02) * np.sin(2 * np.pi * 230 * t)
    return np.round(hum + bursts + rng.normal(0, 40, t.size)).astype(np.int16)


def chirp_spectrogram(rng: np.random.Generator) -> np.ndarray:
    fs, frame, hop, frames = 1000, 256, 128, 64
    t = np.arange(hop * (frames + 1)) / fs
    f0, f1 = 50, 400
    phase = 2 * np.pi * (f0 * t + (f1 - f0) / (2 * t[-1]) * t**2)
    signal = np.sin(phase) + rng.normal(0, 0.3, t.size)
    window = np.hanning(frame)
    windows = np.stack([signal[i * hop : i * hop + frame] * window for i in range(frames)])
    spectrum = np.fft.rfft(windows, axis=1)
    step = 1 / 64
    return (quantize(spectrum.real, step) + 1j * quantize(spectrum.imag, step)).astype(np.complex64)


def hills(rng: np.random.Generator, y: np.ndarray, x: np.ndarray, n: int, width: float):
    """A smooth random landscape: a sum of ``n`` Gaussian bumps on the (y, x) grid in [0, 1]."""
    total = np.zeros(np.broadcast_shapes(y.shape, x.shape))
    for cy, cx, h, w in zip(rng.uniform(0, 1, n), rng.uniform(0, 1, n),
                            rng.normal(0, 1, n), rng.uniform(0.3, 1, n) * width):  # fmt: skip
        total += h * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * w**2))
    return total


def terrain(rng: np.random.Generator) -> np.ndarray:
    y, x = grid(np.linspace(0, 1, 240), np.linspace(0, 1.5, 360))
    height = 600 + 400 * hills(rng, y, x, 25, 0.15) + 80 * hills(rng, y, x, 80, 0.04)
    height += 1200 * np.exp(-((y - 0.8 * x + 0.2) ** 2) / 0.01)  # a ridge
    height += rng.normal(0, 1, height.shape)
    return quantize(np.clip(height, 0, None), 1 / 4).astype(np.float32)


def thumbnail(rng: np.random.Generator) -> np.ndarray:
    y, x = grid(np.linspace(0, 1, 96), np.linspace(0, 1, 128))
    sky = np.stack([0.95 - 0.3 * y, 0.55 + 0.2 * y, 0.3 + 0.6 * y], axis=-1)
    sun = np.exp(-((y - 0.55) ** 2 + (x - 0.6) ** 2) / 0.004)[..., None] * [0.1, 0.4, 0.3]
    hillside = (y > 0.7 + 0.08 * np.sin(9 * x))[..., None] * [-0.6, -0.3, -0.3]
    image = 255 * np.clip(sky + sun + hillside, 0, 1) + rng.normal(0, 3, (96, 128, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def temperature(rng: np.random.Generator) -> np.ndarray:
    t, lat, lon = grid(np.arange(24), np.arange(40) * 0.5 + 35, np.arange(60) * 0.5 - 10)
    season = -np.cos(2 * np.pi * (t + 0.5) / 24)
    land = hills(rng, (lat - 35) / 20, (lon + 10) / 30, 12, 0.2)
    temp = 16 - 0.7 * (lat - 35) + 9 * season + 2.5 * land * season
    temp += rng.normal(0, 0.8, temp.shape)
    return quantize(temp, 1 / 16).astype(np.float32)


SALINITY_OFFSET, SALINITY_SCALE = 35.0, 0.001  # stored int16 -> PSU, as in CF packing


def salinity(rng: np.random.Generator) -> np.ndarray:
    depth = np.array([0, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500], dtype=float)
    t, z, lat, lon = grid(np.arange(6), depth, np.linspace(0, 1, 30), np.linspace(0, 1, 40))
    front = np.tanh((lon - 0.4 - 0.2 * lat - 0.03 * t) / 0.08)  # fresher coastal water west
    psu = 35.2 + 0.6 * front * np.exp(-z / 80) + 0.3 * (1 - np.exp(-z / 150))
    psu += rng.normal(0, 0.005, psu.shape)
    return np.round((psu - SALINITY_OFFSET) / SALINITY_SCALE).astype(np.int16)


def sea_surface_height(rng: np.random.Generator) -> np.ndarray:
    y, x = grid(np.linspace(0, 1, 1000), np.linspace(0, 1.2, 1200))
    ssh = 0.4 * hills(rng, y, x, 60, 0.05) + 0.2 * np.sin(6 * x + 2 * y) * np.cos(4 * y)
    ssh += rng.normal(0, 0.01, ssh.shape)
    return quantize(ssh, 2.0**-12)


def buoys(rng: np.random.Generator) -> dict[str, np.ndarray]:
    t, lat, lon = np.arange(24.0), np.arange(20) * 0.25 + 40, np.arange(30) * 0.25 - 5
    tt, yy, xx = grid(t, lat, lon)
    land = (xx - 0.04 * (yy - 40) ** 2 > -1.5).astype(np.uint8)
    sst = 14 + 4 * np.sin(2 * np.pi * tt / 24) - 0.5 * (yy - 40) + rng.normal(0, 0.3, tt.shape)
    sst = np.where(land, np.nan, quantize(sst, 1 / 32)).astype(np.float32)
    wind = np.abs(6 + 3 * np.cos(tt / 4 + xx) + rng.normal(0, 1.5, tt.shape))
    wind = np.round(wind * 100).astype(np.int16)  # packed: value = stored * 0.01
    return {"time": t, "lat": lat.astype(np.float32), "lon": lon.astype(np.float32),
            "sst": sst, "wind_speed": wind, "land_mask": land[0]}  # fmt: skip


# --- the catalogue ------------------------------------------------------------------------

EXAMPLES = [
    Text("README.txt", lambda: README_TXT),
    Text("stations.csv", stations_csv),
    Array("stations/names.b2nd", station_names, (16,), (8,), Codec.ZSTD, (Filter.SHUFFLE,),
          vlmeta={"description": "station names, index i is station_id i+1"}),
    Array("stations/qc_flags.b2nd", qc_flags, (100, 16), (50, 8), Codec.LZ4, (),
          vlmeta={"description": "daily quality flag per station for 2024 (day, station)",
                  "flags": {"OK": "good", "MISS": "missing", "SPIK": "spike",
                            "DRFT": "sensor drift"}}),
    Array("stations/observations.b2nd", observations, (400,), (100,), Codec.ZSTD,
          (Filter.SHUFFLE,),
          vlmeta={"description": "station reports, January 2024",
                  "units": {"time": "s since 1970-01-01T00:00Z", "temperature": "degC",
                            "wind": "m/s (eastward, northward)"}}),
    Array("timeseries/visitor_counts.b2nd", visitor_counts, (1000,), (250,), Codec.LZ4,
          (Filter.SHUFFLE,),
          vlmeta={"units": "visitors/hour", "start": "2024-01-01T00:00Z", "step": "1h"}),
    Array("signals/calibration.b2nd", calibration, (), (), Codec.ZSTD, (Filter.SHUFFLE,),
          vlmeta={"description": "gain of the vibration sensor (multiply counts by it)",
                  "instrument": "accelerometer AX-3",
                  "version": 3,
                  "offset": -0.25,
                  "channels": ["x", "y", "z"],
                  "calibrated": {"by": "lab B", "date": "2024-03-01",
                                 "reference": {"frequency_hz": 160, "amplitude_g": 1.0}}}),
    Frame("signals/vibration.b2frame", vibration, chunksize=16 * 1024, blocksize=4096,
          codec=Codec.ZSTD, filters=(Filter.BITSHUFFLE,),
          vlmeta={"description": "one minute of accelerometer samples",
                  "units": "counts", "sample_rate_hz": 1000, "start": "2024-03-02T10:00Z"}),
    Array("signals/chirp_spectrogram.b2nd", chirp_spectrogram, (24, 50), (8, 25),
          Codec.BLOSCLZ, (Filter.SHUFFLE,),
          vlmeta={"description": "STFT of a 50-400 Hz chirp, 256-sample Hann frames, hop 128",
                  "dims": ["frame", "frequency_bin"], "sample_rate_hz": 1000}),
    Array("images/terrain.b2nd", terrain, (100, 128), (25, 64), Codec.ZSTD,
          (Filter.BITSHUFFLE,),
          vlmeta={"units": "m", "description": "digital elevation model, 100 m pixels"}),
    Array("images/thumbnail.b2nd", thumbnail, (40, 48, 3), (20, 24, 3), Codec.BLOSCLZ, (),
          vlmeta={"description": "evening over the hills", "mode": "RGB"}),
    Array("climate/2024/temperature.b2nd", temperature, (10, 16, 25), (5, 8, 25), Codec.ZSTD,
          (Filter.SHUFFLE,), clevel=7,
          vlmeta={"units": "degC", "long_name": "air temperature at 2 m",
                  "description": "semi-monthly means over a 0.5 degree grid, 2024",
                  "dims": ["time", "lat", "lon"],
                  "lat": {"start": 35.0, "step": 0.5}, "lon": {"start": -10.0, "step": 0.5}}),
    Array("ocean/2024/salinity.b2nd", salinity, (4, 5, 16, 16), (2, 5, 8, 8), Codec.LZ4,
          (Filter.BITSHUFFLE,),
          vlmeta={"units": "PSU", "long_name": "sea water salinity",
                  "description": "monthly profiles, January-June 2024; "
                                 "value = stored * scale_factor + add_offset",
                  "scale_factor": SALINITY_SCALE, "add_offset": SALINITY_OFFSET,
                  "dims": ["time", "depth", "y", "x"],
                  "depth_m": [0, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500]}),
    NetCDF("ocean/buoys.nc", buoys),
]  # fmt: skip

# several MB uncompressed, 40 chunks: too big to commit, written only with --big
BIG_EXAMPLES = [
    Array(f"{BIG_DIR}/sea_surface_height.b2nd", sea_surface_height, (128, 256), (32, 64),
          Codec.ZSTD, (Filter.SHUFFLE,), clevel=3,
          vlmeta={"units": "m", "description": "sea surface height anomaly, synthetic eddies"}),
]  # fmt: skip


# --- writing and checking -----------------------------------------------------------------


@contextlib.contextmanager
def single_threaded():
    """Compress on one thread even if BLOSC_NTHREADS is set: c-blosc2 lets that variable
    override ``nthreads``, and with several threads the order of blocks inside a chunk (so its
    bytes, not its values) depends on which thread finishes first."""
    saved = os.environ.get("BLOSC_NTHREADS")
    os.environ["BLOSC_NTHREADS"] = "1"
    try:
        yield
    finally:
        if saved is None:
            del os.environ["BLOSC_NTHREADS"]
        else:
            os.environ["BLOSC_NTHREADS"] = saved


def build(out: Path, *, big: bool = False) -> list[str]:
    """Write every example under ``out``; return their paths relative to it."""
    written = []
    with single_threaded():
        for example in EXAMPLES + (BIG_EXAMPLES if big else []):
            target = out / example.path
            target.parent.mkdir(parents=True, exist_ok=True)
            example.write(target)
            written.append(example.path)
    return written


def existing_files(out: Path, *, big: bool) -> set[str]:
    """Files under ``out`` that this script is responsible for."""
    found = set()
    for path in out.rglob("*"):
        rel = path.relative_to(out).as_posix()
        if not path.is_file() or rel in HAND_WRITTEN or "__pycache__" in path.parts:
            continue
        if rel.startswith(BIG_DIR + "/") and not big:
            continue
        found.add(rel)
    return found


def check(out: Path, *, big: bool = False) -> list[str]:
    """Compare ``out`` with a fresh build; return one line per problem (empty: all match)."""
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        written = build(Path(tmp), big=big)
        for rel in written:
            if not (out / rel).is_file():
                problems.append(f"missing: {rel}")
            elif (out / rel).read_bytes() != (Path(tmp) / rel).read_bytes():
                problems.append(f"differs: {rel}")
    for rel in sorted(existing_files(out, big=big) - set(written)):
        problems.append(f"not written by this script: {rel}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="target directory [%(default)s]")
    parser.add_argument("--big", action="store_true", help=f"also write {BIG_DIR}/ (several MB)")
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out, big=args.big)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run make_examples.py to regenerate", file=sys.stderr)
            return 1
        print(f"{args.out}: all examples match")
        return 0
    for rel in build(args.out, big=args.big):
        print(f"{(args.out / rel).stat().st_size:>10,}  {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
