"""Perceptual fingerprints for copy search: find other copies of one photo.

A copy is the same photograph resized, recompressed, cropped by up to 10% on any side (all
sides, one side, or unevenly), made brighter or darker, mirrored, or any mix of these. Another
photo of the same person is *not* a copy. Everything here is a pure function: no database.

Design (measured with ``bench/copies.py`` on the labelled dev photos):

* **One 64-bit hash per stored image**: the DCT perceptual hash of ``imagehash.phash`` (32x32
  grey, lowest 8x8 DCT coefficients, each bit = coefficient > their median) computed on the
  image's *central window*: the 80% that is left after cutting ``MARGIN`` = 10% from each side.
  That window survives every crop of up to 10% per side, so a cropped copy still holds all of
  it. Stored as one signed BIGINT (see ``to_int64``).
* **Alignment at query time, not at storage time**: ``probe(image)`` hashes the query in
  every window where the stored image's central window would lie if one of the two images
  were a crop of the other by 0, 5 or 10% on each side (17 windows per axis, 289 in all),
  once as is and once mirrored (the mirrored hashes come from the same DCT with the signs of
  the odd horizontal frequencies flipped), so ``PROBES`` = 578 hashes. The distance of a
  stored image to a query is the smallest Hamming distance between its hash and any of the
  query's hashes. Both directions are covered: a cropped query finds its uncropped original,
  and an uncropped query finds its cropped copies. The grid leaves at most 2.5% of
  misalignment per side, which costs a few bits (the threshold absorbs it).
* Plain whole-image phash/dhash/whash, which store one hash and compare it as is, find
  resized, recompressed, brightened and (with a mirrored query) mirrored copies, but lose
  most copies cropped by 5-10% at any threshold that keeps different photos apart (the
  benchmark prints them side by side).
* ``MAX_DISTANCE`` = 6 of 64 bits: the smallest threshold that finds >= 99.5% of the copies in
  both directions (every kind >= 97%; the misses are off-grid random crops and mixes, at 8).
  At 4 recall drops to ~96% (78% for the worst kind); at 8 every copy is found but false
  matches quadruple. Most false matches left at 6 are near-identical video frames of the same
  scene, which no perceptual hash separates from copies; the rest are tightly aligned face
  crops of different people. On such face crops the measured false-match rate is ~1e-4 per
  (query, stored image) pair, so on a large index rank by distance and expect to confirm.
* A second stored hash (dhash, or the phash of an inner window, checked at the best window)
  was measured and barely changed precision, so one column is stored.

Search: ``nearest(probe(query), stored, MAX_DISTANCE)`` scans an (N x 1) int64 array of stored
hashes with numpy (XOR, popcount, running minimum), ~0.3 s per million rows on one core.
A ``Fingerprint`` can be a query too (``nearest(fingerprint(x), ...)``): then only the stored
windows are compared, as is, which finds resized/recompressed copies (e.g. dedupe) in ~1 ms
per million rows but not crops or mirrors.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps

HASH_BITS = 64
HASH_COLUMNS = 1  # BIGINT columns per stored image
MARGIN = 0.10  # the stored hash covers the image less this fraction on each side
CROP_STEPS = (0.0, 0.05, 0.10)  # per-side crops that probe() aligns to exactly
MAX_DISTANCE = 6  # default Hamming threshold (of HASH_BITS), chosen by bench/copies.py
WORK_SIDE = 128  # images are first reduced to at most this many pixels on their longer side

_HASH_SIDE = 8  # 8 x 8 low-frequency DCT coefficients -> 64 bits
_DCT_SIDE = 32  # window resampled to 32 x 32 grey pixels (imagehash's highfreq_factor=4)
_MASK = (1 << 64) - 1
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


# --------------------------------------------------------------------------- int64 helpers


def to_int64(value: int) -> int:
    """An unsigned 64-bit hash as the signed int64 with the same bits (fits a SQL BIGINT)."""
    if not 0 <= value <= _MASK:
        raise ValueError(f"{value} is not an unsigned 64-bit value")
    return value - (1 << 64) if value > _INT64_MAX else value


def to_uint64(value: int) -> int:
    """The unsigned 64-bit value of a signed int64 hash (inverse of ``to_int64``)."""
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"{value} is not a signed 64-bit value")
    return value & _MASK


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes (signed or unsigned ints)."""
    return ((a ^ b) & _MASK).bit_count()


# --------------------------------------------------------------------------- fingerprints


@dataclass(frozen=True)
class Fingerprint:
    """What is stored for one image: ``HASH_COLUMNS`` hashes, each a signed int64."""

    hashes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.hashes:
            raise ValueError("a fingerprint needs at least one hash")
        for value in self.hashes:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{value!r} is not an int")
            if not _INT64_MIN <= int(value) <= _INT64_MAX:
                raise ValueError(f"{value!r} is not a signed 64-bit int")
        object.__setattr__(self, "hashes", tuple(int(value) for value in self.hashes))  # plain ints

    def row(self) -> np.ndarray:
        """The hashes as an int64 array of shape (HASH_COLUMNS,), one row of ``nearest``'s table."""
        return np.array(self.hashes, dtype=np.int64)

    def hex(self) -> str:
        """The hashes as unsigned hex, 16 digits each, comma separated (imagehash's notation)."""
        return ",".join(f"{to_uint64(value):016x}" for value in self.hashes)

    @classmethod
    def from_hex(cls, text: str) -> Fingerprint:
        return cls(tuple(to_int64(int(part, 16)) for part in text.split(",")))


@dataclass(frozen=True)
class Probe:
    """What a query is compared with: its hashes in every aligned window, as is and mirrored."""

    hashes: tuple[int, ...]  # signed int64

    def array(self) -> np.ndarray:
        return np.array(self.hashes, dtype=np.int64)


ImageLike = Image.Image | np.ndarray


def fingerprint(image: ImageLike) -> Fingerprint:
    """The stored fingerprint of an image: phash of its central window (10% margin per side)."""
    grey = _work_image(image)
    window = (MARGIN, MARGIN, 1.0 - MARGIN, 1.0 - MARGIN)
    coefficients = _dct_windows(grey, [window])
    return Fingerprint(tuple(int(v) for v in _bits_to_int64(coefficients)))


def probe(image: ImageLike) -> Probe:
    """The query-side hashes of an image: ``PROBES`` hashes (aligned windows x {as is, mirrored})."""
    grey = _work_image(image)
    coefficients = _dct_windows(grey, _windows())
    mirrored = coefficients * _MIRROR_SIGNS
    hashes = np.concatenate([_bits_to_int64(coefficients), _bits_to_int64(mirrored)])
    return Probe(tuple(int(v) for v in hashes))


def distance(query: Fingerprint | Probe, candidate: Fingerprint) -> int:
    """Smallest Hamming distance between any hash of ``query`` and any hash of ``candidate``."""
    return min(hamming(q, c) for q in query.hashes for c in candidate.hashes)


def nearest(
    query: Fingerprint | Probe, stored: np.ndarray, max_distance: int = MAX_DISTANCE
) -> list[tuple[int, int]]:
    """Rows of ``stored`` (N x H int64, or N int64) within ``max_distance`` of ``query``.

    A row's distance is the smallest Hamming distance between any of its H hashes and any hash
    of the query. Returns ``[(row, distance), ...]`` sorted by distance, then row.
    """
    table = np.asarray(stored)
    if table.ndim == 1:
        table = table[:, None]
    if table.ndim != 2:
        raise ValueError(f"stored must be N x H, got shape {table.shape}")
    # Work on unsigned bits: numpy's popcount of a negative int64 counts the bits of its absolute value.
    if table.dtype == np.int64:
        table = table.view(np.uint64)
    elif table.dtype != np.uint64:
        table = table.astype(np.int64).view(np.uint64)
    hashes = np.unique(np.array(query.hashes, dtype=np.int64).view(np.uint64))
    best = np.full(len(table), HASH_BITS + 1, dtype=np.uint8)
    xor = np.empty(_CHUNK, dtype=np.uint64)
    count = np.empty(_CHUNK, dtype=np.uint8)
    for start in range(0, len(table), _CHUNK):
        stop = min(start + _CHUNK, len(table))
        n = stop - start
        out = best[start:stop]
        x, c = xor[:n], count[:n]
        for column in range(table.shape[1]):
            values = np.ascontiguousarray(table[start:stop, column])
            for h in hashes:
                np.bitwise_xor(values, h, out=x)
                _popcount(x, out=c)
                np.minimum(out, c, out=out)
    rows = np.flatnonzero(best <= max_distance)
    found = best[rows]
    order = np.lexsort((rows, found))
    return [(int(rows[i]), int(found[i])) for i in order]


# --------------------------------------------------------------------------- internals

_CHUNK = 1 << 15  # rows per block in nearest(): keeps the block and its scratch in cache


def _popcount_lut(values: np.ndarray, out: np.ndarray) -> np.ndarray:
    counts = _BYTE_POPCOUNT[values.view(np.uint8).reshape(-1, 8)].sum(axis=1, dtype=np.uint8)
    out[...] = counts
    return out


_BYTE_POPCOUNT = np.array([i.bit_count() for i in range(256)], dtype=np.uint8)
_popcount = np.bitwise_count if hasattr(np, "bitwise_count") else _popcount_lut


def _work_image(image: ImageLike) -> Image.Image:
    """A grey (mode L) copy of the image, at most WORK_SIDE pixels on its longer side."""
    if isinstance(image, np.ndarray):
        image = _from_array(image)
    elif isinstance(image, Image.Image):
        image = ImageOps.exif_transpose(image)
    else:
        raise TypeError(f"expected a PIL image or a numpy array, got {type(image).__name__}")
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    grey = image.convert("L")
    width, height = grey.size
    if width < 1 or height < 1:
        raise ValueError("empty image")
    longer = max(width, height)
    if longer > WORK_SIDE:
        scale = WORK_SIDE / longer
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        grey = grey.resize(size, Image.Resampling.BOX)
    return grey


def _from_array(pixels: np.ndarray) -> Image.Image:
    if pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {pixels.dtype}")
    if pixels.ndim == 2:
        return Image.fromarray(pixels, mode="L")
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(pixels[:, :, :3]), mode="RGB")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]), mode="L")
    raise ValueError(f"expected H x W, H x W x 3 or H x W x 4 pixels, got shape {pixels.shape}")


def _dct_matrix() -> np.ndarray:
    """The first 8 rows of the 32-point DCT-II (scipy's unnormalised dct, up to a factor 2)."""
    k = np.arange(_HASH_SIDE)[:, None]
    n = np.arange(_DCT_SIDE)[None, :]
    return np.cos(np.pi * (2 * n + 1) * k / (2 * _DCT_SIDE))


_DCT = _dct_matrix()
# Mirroring a block left-right multiplies its DCT coefficient (u, v) by (-1) ** v.
_MIRROR_SIGNS = np.where(np.arange(_HASH_SIDE) % 2 == 0, 1.0, -1.0)[None, None, :]


def _dct_windows(
    grey: Image.Image,
    windows: list[tuple[float, float, float, float]],
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> np.ndarray:
    """Low-frequency DCT coefficients (W x 8 x 8) of each window (fractions of width/height)."""
    width, height = grey.size
    blocks = np.empty((len(windows), _DCT_SIDE, _DCT_SIDE), dtype=np.float64)
    for i, (x0, y0, x1, y1) in enumerate(windows):
        box = (x0 * width, y0 * height, x1 * width, y1 * height)
        resized = grey.resize((_DCT_SIDE, _DCT_SIDE), resample, box=box)
        blocks[i] = np.asarray(resized, dtype=np.float64)
    return _DCT @ blocks @ _DCT.T


def _bits_to_int64(coefficients: np.ndarray) -> np.ndarray:
    """phash bits (coefficient > median of its 64) packed first-bit-highest, as int64."""
    flat = coefficients.reshape(len(coefficients), _HASH_SIDE * _HASH_SIDE)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    packed = np.packbits(bits, axis=1)  # W x 8 bytes, big-endian bit order like imagehash
    return packed.view(">u8").astype(np.uint64).view(np.int64).ravel()


@lru_cache(maxsize=1)
def _axis_windows() -> tuple[tuple[float, float], ...]:
    """Where the stored central window lies along one axis of the query, for each crop pair.

    If the query is the stored image cropped by (lo, hi) along this axis, the stored window
    [m, 1-m] appears at ((m - lo) / L, (1 - m - lo) / L) with L = 1 - lo - hi; if the stored
    image is the query cropped by (lo, hi), it appears at (lo + m L, lo + (1 - m) L).
    """
    spans = set()
    for lo in CROP_STEPS:
        for hi in CROP_STEPS:
            length = 1.0 - lo - hi
            spans.add((round((MARGIN - lo) / length, 6), round((1.0 - MARGIN - lo) / length, 6)))
            spans.add((round(lo + MARGIN * length, 6), round(lo + (1.0 - MARGIN) * length, 6)))
    return tuple(sorted(spans))


@lru_cache(maxsize=1)
def _windows_cached() -> tuple[tuple[float, float, float, float], ...]:
    spans = _axis_windows()
    return tuple((x0, y0, x1, y1) for (x0, x1) in spans for (y0, y1) in spans)


def _windows() -> list[tuple[float, float, float, float]]:
    return list(_windows_cached())


PROBES = 2 * len(_windows_cached())  # hashes per probe: aligned windows x {as is, mirrored}
