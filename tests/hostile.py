"""Hostile and odd image files, made on the fly."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1-bit PNG whose header claims width x height pixels (~100 KB on disk)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def write_hostile_files(folder: Path, good_jpeg: bytes) -> dict[str, str]:
    """Writes one file per kind of bad input; returns file name -> expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "empty.jpg": (b"", "empty"),
        "truncated.jpg": (good_jpeg[: len(good_jpeg) // 2], "truncated"),
        "corrupt.jpg": (good_jpeg[:200] + bytes(range(256)) * 20, "corrupt"),
        "text-renamed.jpg": (b"this is not a photo, just text\n" * 10, "not_an_image"),
        "bomb.png": (png_bomb(), "too_many_pixels"),
        "icon.ico": (encode(Image.new("RGB", (32, 32), "red"), "ICO"), "unsupported_format"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items()}
