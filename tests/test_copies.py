"""Copy search fingerprints (facetrail.images.copies) on a handful of real dev photos.

Each kind of copy (resized, recompressed, cropped up to 10% per side, brighter or darker,
mirrored, and a mix) is found within MAX_DISTANCE in both directions: a copy finds its
original, and the original finds the copy. Other photos, of the same person or not, are not
copies. Recall and precision over the whole dev set are measured by bench/copies.py.
"""

from __future__ import annotations

import io
import random
from functools import cache

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from facetrail.images import copies
from facetrail.images.copies import MAX_DISTANCE, Fingerprint, distance, fingerprint, hamming, nearest, probe

from .support import DEV

if not (DEV / "manifest.csv").exists():
    pytest.skip(f"dev photos not found at {DEV} (expects ../shared beside the repository)",
                allow_module_level=True)

# A web photo, an aligned 112x112 face crop, a TV still crop, a 1360x2048 photo, and no person.
ORIGINALS = ["bill_gates/1.jpg", "tom_hanks/1.png", "bbt_howard/1.png", "noam_chomsky/1.jpg", "distractors/1.jpg"]
# Other photographs: same person, and different people.
DIFFERENT = [
    ("bill_gates/1.jpg", "bill_gates/2.jpg"),
    ("tom_hanks/1.png", "tom_hanks/2.png"),
    ("bbt_howard/1.png", "bbt_howard/2.png"),
    ("noam_chomsky/1.jpg", "noam_chomsky/2.jpg"),
    ("madonna/1.jpg", "madonna/2.jpg"),
    ("bill_gates/1.jpg", "noam_chomsky/2.jpg"),
    ("tom_hanks/1.png", "bbt_howard/1.png"),
    ("madonna/2.jpg", "distractors/1.jpg"),
]


def crop(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = image.size
    return image.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def resize(image: Image.Image, factor: float) -> Image.Image:
    return image.resize((max(1, round(image.width * factor)), max(1, round(image.height * factor))),
                        Image.Resampling.LANCZOS)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def brightness(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


VARIANTS = {
    "resize-50%": lambda im: resize(im, 0.5),
    "resize-25%": lambda im: resize(im, 0.25),
    "jpeg-q30": lambda im: jpeg(im, 30),
    "crop-5%-all": lambda im: crop(im, 0.05, 0.05, 0.05, 0.05),
    "crop-10%-all": lambda im: crop(im, 0.10, 0.10, 0.10, 0.10),
    "crop-10%-left": lambda im: crop(im, 0.10, 0, 0, 0),
    "crop-10%-top": lambda im: crop(im, 0, 0.10, 0, 0),
    "crop-10%-right": lambda im: crop(im, 0, 0, 0.10, 0),
    "crop-10%-bottom": lambda im: crop(im, 0, 0, 0, 0.10),
    "crop-asym-10/3/0/7%": lambda im: crop(im, 0.10, 0.03, 0, 0.07),
    "crop-asym-0/7/10/3%": lambda im: crop(im, 0, 0.07, 0.10, 0.03),
    "bright-x0.7": lambda im: brightness(im, 0.7),
    "bright-x1.3": lambda im: brightness(im, 1.3),
    "mirror": ImageOps.mirror,
    "combo": lambda im: jpeg(resize(brightness(crop(ImageOps.mirror(im), 0.06, 0.03, 0.02, 0.08), 1.15), 0.5), 50),
}


@cache
def photo(path: str) -> Image.Image:
    with Image.open(DEV / path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


@cache
def fp_of(path: str) -> Fingerprint:
    return fingerprint(photo(path))


@cache
def probe_of(path: str) -> copies.Probe:
    return probe(photo(path))


@pytest.mark.parametrize("kind", list(VARIANTS))
@pytest.mark.parametrize("path", ORIGINALS)
def test_each_kind_of_copy_is_found_both_ways(path, kind):
    copy = VARIANTS[kind](photo(path))
    assert distance(probe(copy), fp_of(path)) <= MAX_DISTANCE  # the copy finds its original
    assert distance(probe_of(path), fingerprint(copy)) <= MAX_DISTANCE  # the original finds the copy


@pytest.mark.parametrize("a, b", DIFFERENT)
def test_other_photos_are_not_copies(a, b):
    assert distance(probe_of(a), fp_of(b)) > MAX_DISTANCE
    assert distance(probe_of(b), fp_of(a)) > MAX_DISTANCE


def test_mirror_is_found_only_through_the_probe():
    original = photo("bill_gates/1.jpg")
    mirrored = fingerprint(ImageOps.mirror(original))
    assert distance(probe_of("bill_gates/1.jpg"), mirrored) <= 2
    assert distance(fp_of("bill_gates/1.jpg"), mirrored) > MAX_DISTANCE  # one hash alone is not mirror-proof
    assert nearest(probe(ImageOps.mirror(original)), np.stack([fp_of(p).row() for p in ORIGINALS]))[0][0] == 0


def test_probe_holds_every_aligned_window_as_is_and_mirrored():
    p = probe_of("tom_hanks/1.png")
    assert len(p.hashes) == copies.PROBES == 2 * 17 * 17
    assert fp_of("tom_hanks/1.png").hashes[0] in p.hashes  # the stored window is one of them
    assert distance(p, fp_of("tom_hanks/1.png")) == 0


def test_same_hash_as_imagehash_phash_on_a_whole_image():
    grey = photo("bill_gates/1.jpg").convert("L")
    coefficients = copies._dct_windows(grey, [(0.0, 0.0, 1.0, 1.0)], Image.Resampling.LANCZOS)
    ours = int(copies._bits_to_int64(coefficients)[0])
    assert f"{copies.to_uint64(ours):016x}" == str(imagehash.phash(grey))


def test_pil_and_array_inputs_agree():
    image = photo("madonna/1.jpg")
    pixels = np.asarray(image)
    assert fingerprint(pixels) == fingerprint(image)
    assert fingerprint(np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)])) == fingerprint(image)
    assert fingerprint(np.asarray(image.convert("L"))) == fingerprint(image.convert("L"))
    with pytest.raises(ValueError):
        fingerprint(pixels.astype(np.float32))
    with pytest.raises(TypeError):
        fingerprint(b"not an image")


def test_int64_conversion_round_trips():
    for unsigned in (0, 1, 2**63 - 1, 2**63, 2**64 - 1, 0xCB341D7C47CC7429):
        signed = copies.to_int64(unsigned)
        assert -(2**63) <= signed < 2**63
        assert copies.to_uint64(signed) == unsigned
        assert int(np.array([signed], dtype=np.int64)[0]) == signed  # fits a BIGINT / int64 column
    assert copies.to_int64(2**64 - 1) == -1
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            copies.to_int64(bad)
    for bad in (2**63, -(2**63) - 1):
        with pytest.raises(ValueError):
            copies.to_uint64(bad)
    fp = fp_of("bill_gates/1.jpg")
    assert len(fp.hashes) == copies.HASH_COLUMNS
    assert all(isinstance(h, int) and -(2**63) <= h < 2**63 for h in fp.hashes)
    assert Fingerprint.from_hex(fp.hex()) == fp
    assert fp.row().dtype == np.int64 and int(fp.row()[0]) == fp.hashes[0]
    with pytest.raises(ValueError):
        Fingerprint((2**63,))
    from_db = Fingerprint((np.int64(fp.hashes[0]),))  # e.g. read back through numpy
    assert from_db == fp and type(from_db.hashes[0]) is int


def test_hamming():
    assert hamming(0, 0) == 0
    assert hamming(0, -1) == 64  # signed int64 -1 is all ones
    assert hamming(copies.to_int64(2**64 - 1), 0) == 64
    assert hamming(0b1011, 0b0001) == 2 == hamming(0b0001, 0b1011)
    rng = random.Random(1)
    for _ in range(100):
        a, b = rng.randrange(-(2**63), 2**63), rng.randrange(-(2**63), 2**63)
        assert hamming(a, b) == bin((a ^ b) & (2**64 - 1)).count("1")


def test_nearest_returns_sorted_rows_within_the_threshold():
    rng = np.random.default_rng(7)
    table = rng.integers(-(2**63), 2**63, size=(5000, 1), dtype=np.int64)
    query = probe_of("bbt_howard/1.png")
    base = fp_of("bbt_howard/1.png").hashes[0]
    planted = {}
    for row, flips in [(4000, 5), (10, 0), (2500, 3), (77, 1), (3000, 3), (4999, 6), (123, 9)]:
        value = copies.to_uint64(base)
        for bit in rng.choice(64, size=flips, replace=False):
            value ^= 1 << int(bit)
        table[row, 0] = copies.to_int64(value)
        planted[row] = flips
    found = nearest(query, table, MAX_DISTANCE)
    expected = sorted((distance(query, Fingerprint((int(table[r, 0]),))), r) for r in range(len(table)))
    expected = [(r, d) for d, r in expected if d <= MAX_DISTANCE]
    assert found == expected
    assert [d for _, d in found] == sorted(d for _, d in found)
    assert all(d <= MAX_DISTANCE for _, d in found)
    for row, flips in planted.items():
        if flips <= MAX_DISTANCE:
            assert dict(found)[row] <= flips  # the stored-window probe is this close, or another closer
    # the same table as a 1-D array, as uint64, and an empty one
    assert nearest(query, table[:, 0], MAX_DISTANCE) == found
    assert nearest(query, table.view(np.uint64), MAX_DISTANCE) == found
    assert nearest(query, np.empty((0, 1), dtype=np.int64), MAX_DISTANCE) == []
    # a threshold of 0 keeps exact matches only
    assert nearest(query, table, 0) == [(10, 0)]


def test_nearest_counts_the_bits_of_negative_hashes():
    table = np.array([[-1], [0], [2**63 - 1], [-(2**63)], [-2]], dtype=np.int64)
    found = dict(nearest(Fingerprint((0,)), table, 64))
    assert found == {0: 64, 1: 0, 2: 63, 3: 1, 4: 63}
    rng = np.random.default_rng(3)
    values = rng.integers(-(2**63), 2**63, size=(300, 1), dtype=np.int64)
    query = Fingerprint((int(values[0, 0]),))
    assert dict(nearest(query, values, 64)) == {r: hamming(query.hashes[0], int(v)) for r, v in enumerate(values[:, 0])}


def test_nearest_takes_the_best_of_several_columns():
    a, b = fp_of("bill_gates/1.jpg").hashes[0], fp_of("tom_hanks/1.png").hashes[0]
    table = np.array([[a, b], [b, a], [~a, ~a]], dtype=np.int64)
    assert nearest(Fingerprint((a,)), table, 0) == [(0, 0), (1, 0)]
