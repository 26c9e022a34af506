"""A generated corpus of hostile image files, for tests/test_hostile_corpus.py and bench/hostile.py.

Families: truncated files, decompression bombs in every supported format (headers that claim
huge sizes, or real frames over the decode budget), wrong magic bytes, high bit depths and odd
modes, huge EXIF and metadata, many frames, and bit flips in valid files. `corpus(n)` cycles
through them, so any n covers every family; the same seed gives the same bytes.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
EXTENSION = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


@dataclass(frozen=True)
class Hostile:
    name: str  # unique file name, with the family and an extension
    family: str
    data: bytes


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _picture(rng: random.Random, size=(160, 120)) -> Image.Image:
    """A small picture with some structure (gradients and noise), no face."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    seed = rng.randrange(1 << 30)
    noise = np.random.default_rng(seed).integers(0, 40, (h, w, 3))
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=-1)
    return Image.fromarray(((base + noise) % 256).astype(np.uint8))


@cache
def _valid(fmt: str, seed: int) -> bytes:
    rng = random.Random(seed)
    return _save(_picture(rng, (rng.randrange(40, 400), rng.randrange(40, 300))), fmt)


def _png(width: int, height: int, depth: int, colour: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@cache
def _png_bomb(width: int, height: int) -> bytes:
    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return _png(width, height, 1, 0, body)


@cache
def _deflated(mode: str, size: tuple[int, int], fmt: str = "TIFF") -> bytes:
    """A real frame of zeros, deflated: a few hundred KB that decode to hundreds of MB."""
    options = {"compression": "tiff_adobe_deflate"} if fmt == "TIFF" else {}
    if fmt == "WEBP":
        options = {"lossless": True}
    return _save(Image.new(mode, size, 0), fmt, **options)


def _jpeg_sized(width: int, height: int, seed: int) -> bytes:
    """A small valid JPEG whose frame header (SOF) claims width x height."""
    data = bytearray(_valid("JPEG", seed))
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def _gif_sized(width: int, height: int, seed: int) -> bytes:
    data = bytearray(_valid("GIF", seed))
    struct.pack_into("<HH", data, 6, width, height)
    return bytes(data)


def _bmp(width: int, height: int, bits: int, pixels: bytes = b"") -> bytes:
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(header) + len(pixels), 0, 0, 54) + header + pixels


def _tiff_header(width: int, height: int, bits: int = 8, samples: int = 3) -> bytes:
    """A little-endian TIFF whose one IFD claims width x height and points at 16 bytes of data."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits), (259, 3, 1, 1),
               (262, 3, 1, 2 if samples == 3 else 1), (273, 4, 1, 8 + 2 + 12 * 9 + 4),
               (277, 3, 1, samples), (278, 4, 1, height), (279, 4, 1, 16)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
        for tag, kind, count, value in entries) + b"\x00\x00\x00\x00"
    return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(16)


def _webp_vp8x(width: int, height: int) -> bytes:
    """A WebP whose extended header (VP8X) claims a width x height canvas, then a tiny real image."""
    inner = _save(Image.new("RGB", (16, 16), "red"), "WEBP", lossless=True)[12:]  # its VP8L chunk
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (
        height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + inner
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- families: each (rng, i) -> (extension, bytes) ------------------------------------------------


def truncated(rng: random.Random, i: int) -> tuple[str, bytes]:
    fmt = FORMATS[i % len(FORMATS)]
    data = _valid(fmt, i % 40)
    return EXTENSION[fmt], data[: rng.randrange(1, max(2, len(data) - 1))]


def bomb(rng: random.Random, i: int) -> tuple[str, bytes]:
    kinds: list[Callable[[], tuple[str, bytes]]] = [  # the first seven: one of each supported format
        lambda: ("tif", _deflated("F", (7999, 7999))),  # the 368 KB float TIFF of issue 12
        lambda: ("png", _png_bomb(rng.choice([30000, 50000]), rng.choice([30000, 20000]))),
        lambda: ("jpg", _jpeg_sized(rng.randrange(20000, 65535), rng.randrange(20000, 65535), i % 40)),
        lambda: ("gif", _gif_sized(65535, 65535, i % 40)),
        lambda: ("bmp", _bmp(rng.randrange(20000, 60000), rng.randrange(20000, 60000), 24)),
        lambda: ("webp", _webp_vp8x(16384, 16384)),
        lambda: ("webp", _deflated("RGB", (4000, 4000), "WEBP")),
        lambda: ("png", _png(rng.randrange(7000, 7999), rng.randrange(7000, 7999), 8, 6, zlib.compress(bytes(4096)))),
        lambda: ("png", _png(2**31 - 1, 2**31 - 1, 16, 2, b"")),
        lambda: ("jpg", _jpeg_sized(rng.randrange(6000, 7999), rng.randrange(6000, 7999), i % 40)),
        lambda: ("gif", _gif_sized(rng.randrange(6000, 7999), rng.randrange(6000, 7999), i % 40)),
        lambda: ("bmp", _bmp(7000, 7000, 32, bytes(1024))),
        lambda: ("bmp", _bmp(-5000, -5000, 24)),
        lambda: ("tif", _deflated("I;16", (7999, 7999))),
        lambda: ("tif", _tiff_header(rng.randrange(20000, 100000), rng.randrange(20000, 100000))),
        lambda: ("tif", _tiff_header(7999, 7999, 32, 1)),
    ]
    return kinds[i % len(kinds)]()


def wrong_magic(rng: random.Random, i: int) -> tuple[str, bytes]:
    junk = rng.randbytes(rng.randrange(0, 4096))
    kinds = [
        ("jpg", b""), ("jpg", b"\xff"), ("jpg", junk), ("png", b"this is not a photo\n" * 20),
        ("jpg", b"<html><body><img src=x></body></html>"), ("jpg", b"%PDF-1.7\n" + junk),
        ("jpg", b"PK\x03\x04" + junk), ("png", b"\x7fELF" + junk),
        ("jpg", b"\xff\xd8\xff" + junk), ("png", b"\x89PNG\r\n\x1a\n" + junk), ("gif", b"GIF89a" + junk),
        ("bmp", b"BM" + junk), ("tif", b"II*\x00" + junk), ("tif", b"MM\x00*" + junk),
        ("webp", b"RIFF\x00\x00\x00\x00WEBP" + junk), ("ico", _save(Image.new("RGB", (32, 32)), "ICO")),
        ("psd", b"8BPS" + junk), ("avif", b"\x00\x00\x00\x1cftypavif" + junk), ("svg", b"<svg xmlns='x'/>"),
        ("jpg", _valid("PNG", i % 40)),  # a PNG named .jpg: read by its content
        ("png", _valid("PNG", i % 40)[:8] + _valid("JPEG", i % 40)[8:]),
    ]
    return kinds[i % len(kinds)]


def high_depth(rng: random.Random, i: int) -> tuple[str, bytes]:
    w, h = rng.randrange(8, 300), rng.randrange(8, 300)
    values = np.random.default_rng(i).random((h, w))
    kinds = [
        lambda: ("png", _save(Image.fromarray((values * 65535).astype(np.uint16)), "PNG")),
        lambda: ("tif", _save(Image.fromarray((values * 65535).astype(np.uint16)), "TIFF")),
        lambda: ("tif", _save(Image.fromarray((values * 2**31).astype(np.int32)), "TIFF")),
        lambda: ("tif", _save(Image.fromarray((values * 1e6 - 5e5).astype(np.float32)), "TIFF")),
        lambda: ("tif", _save(Image.fromarray(np.where(values > 0.5, np.nan, np.inf).astype(np.float32)), "TIFF")),
        lambda: ("tif", _save(Image.fromarray(values.astype(np.float32)), "TIFF", compression="tiff_adobe_deflate")),
        lambda: ("jpg", _save(_picture(rng, (w, h)).convert("CMYK"), "JPEG")),
        lambda: ("png", _save(_picture(rng, (w, h)).convert("LA"), "PNG")),
        lambda: ("png", _save(_picture(rng, (w, h)).convert("1"), "PNG")),
        lambda: ("tif", _save(_picture(rng, (w, h)).convert("CMYK"), "TIFF")),
        lambda: ("tif", _save(_picture(rng, (w, h)).convert("YCbCr"), "TIFF")),
        lambda: ("png", _save(_picture(rng, (w, h)).convert("P"), "PNG", transparency=0)),
        lambda: ("tif", _save(Image.fromarray((values * 65535).astype(">u2")), "TIFF")),
    ]
    return kinds[i % len(kinds)]()


def huge_metadata(rng: random.Random, i: int) -> tuple[str, bytes]:
    picture = _picture(rng)
    exif = Image.Exif()
    exif[0x010E] = "x" * rng.randrange(1000, 60000)  # ImageDescription: a JPEG APP1 holds < 64 KB
    exif[0x0112] = rng.choice([0, 1, 6, 8, 9, 255, 65535])  # orientation, valid or not
    big = Image.Exif()
    big[0x010E] = "y" * rng.randrange(1_000_000, 8_000_000)
    big[0x0112] = rng.choice([1, 3, 5, 7, 42])
    kinds = [
        lambda: ("jpg", _save(picture, "JPEG", exif=exif)),
        lambda: ("jpg", _save(picture, "JPEG", exif=rng.randbytes(60000))),
        lambda: ("png", _save(picture, "PNG", exif=big)),
        lambda: ("webp", _save(picture, "WEBP", exif=big)),
        lambda: ("tif", _save(picture, "TIFF", exif=big)),
        lambda: ("png", _save(picture, "PNG", exif=b"Exif\x00\x00" + rng.randbytes(100000))),
        lambda: ("jpg", _save(picture, "JPEG", icc_profile=rng.randbytes(rng.randrange(70000, 1_000_000)))),
    ]
    return kinds[i % len(kinds)]()


def many_frames(rng: random.Random, i: int) -> tuple[str, bytes]:
    count = rng.randrange(50, 400)
    frames = [Image.new("RGB", (32, 24), (k % 256, (k * 7) % 256, 0)) for k in range(count)]
    kinds = [
        lambda: ("gif", _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10)),
        lambda: ("png", _save(frames[0], "PNG", save_all=True, append_images=frames[1:])),
        lambda: ("tif", _save(frames[0], "TIFF", save_all=True, append_images=frames[1:])),
        lambda: ("webp", _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)),
        lambda: ("tif", _save(frames[0], "TIFF", save_all=True,
                              append_images=[Image.open(io.BytesIO(_deflated("F", (7999, 7999))))])),
    ]
    return kinds[i % len(kinds)]()


def bit_flips(rng: random.Random, i: int) -> tuple[str, bytes]:
    fmt = FORMATS[i % len(FORMATS)]
    data = bytearray(_valid(fmt, i % 40))
    for _ in range(rng.randrange(1, 24)):
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
    return EXTENSION[fmt], bytes(data)


FAMILIES: dict[str, Callable[[random.Random, int], tuple[str, bytes]]] = {
    "truncated": truncated, "bomb": bomb, "wrong_magic": wrong_magic, "high_depth": high_depth,
    "huge_metadata": huge_metadata, "many_frames": many_frames, "bit_flips": bit_flips,
}


def corpus(n: int, seed: int = 12) -> Iterator[Hostile]:
    """n hostile files, cycling through the families (n >= 7 covers each)."""
    names = list(FAMILIES)
    for k in range(n):
        family = names[k % len(names)]
        i = k // len(names)
        rng = random.Random(f"{seed}-{family}-{i}")
        extension, data = FAMILIES[family](rng, i)
        yield Hostile(f"{k:05d}-{family}-{i}.{extension}", family, data)
