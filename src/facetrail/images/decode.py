"""Turn untrusted bytes into RGB pixels, or a clear reason why not.

Checks, in order: empty, too many bytes, magic bytes (a known image format), pixel count
from the header before any pixel is decoded (decompression bombs), then a full decode
(truncated or corrupt data). GIFs give their first frame; EXIF orientation is applied.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from struct import error as struct_error

import numpy as np
from PIL import Image, ImageFile, ImageOps

from ..errors import Refused

ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pixel limits are checked by `decode` against the configured limit, from the header, before
# any pixel is decoded; Pillow's own fixed limit would pre-empt that with a less useful message.
Image.MAX_IMAGE_PIXELS = None

# Formats facetrail indexes, by their magic bytes.
SUPPORTED = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"}
_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"WEBP", 8, "WEBP"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
]
# Image formats we recognise but do not index (reported as unsupported, not as "not an image").
_OTHER_IMAGES: list[tuple[bytes, int, str]] = [
    (b"ftypavif", 4, "AVIF"),
    (b"ftypheic", 4, "HEIC"),
    (b"ftypmif1", 4, "HEIF"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"8BPS", 0, "PSD"),
    (b"gimp xcf", 0, "XCF"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG2000"),
    (b"\xff\x0a", 0, "JPEG-XL"),
    (b"<svg", 0, "SVG"),
    (b"<?xml", 0, "SVG"),
]


class DecodeError(Refused):
    """An input that cannot be used. `reason` (= `code`) is a short stable code, the message explains."""

    code = "not_an_image"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason)

    @property
    def reason(self) -> str:
        return self.code


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 64_000_000


@dataclass(frozen=True)
class DecodedImage:
    sha256: str
    bytes: int
    format: str
    width: int  # of the image (upright: EXIF orientation applied)
    height: int
    pixels: np.ndarray  # H x W x 3 uint8 RGB: the image, or a reduced copy (see `scale`)
    scale: float = 1.0  # pixels' size / the image's size (below 1 with decode's `max_side`)


def sniff_format(data: bytes) -> str | None:
    """Image format from magic bytes: a SUPPORTED name, another image format's name, or None."""
    for magic, offset, name in _MAGIC + _OTHER_IMAGES:
        if data[offset : offset + len(magic)] == magic:
            if name == "WEBP" and data[:4] != b"RIFF":
                continue
            return name
    return None


def decode(data: bytes, limits: Limits = Limits(), max_side: int | None = None) -> DecodedImage:
    """Decode image bytes to RGB pixels. Raises DecodeError with a reason code.

    `max_side` (for query photos, where speed matters more than the last pixel): an image at
    least twice that size is reduced by a whole factor, keeping its longest side >= max_side.
    JPEGs are decoded reduced (1/2, 1/4 or 1/8 scale, several times faster than in full)."""
    if not data:
        raise DecodeError("empty", "empty file")
    if len(data) > limits.max_bytes:
        raise DecodeError("too_large", f"{len(data)} bytes is over the limit of {limits.max_bytes}")
    kind = sniff_format(data)
    if kind is None:
        raise DecodeError("not_an_image", "not an image (unknown file signature)")
    if kind not in SUPPORTED:
        raise DecodeError("unsupported_format", f"{kind} images are not supported")
    try:
        image = Image.open(io.BytesIO(data), formats=[kind])
        width, height = image.size
        if width * height > limits.max_pixels:
            raise DecodeError(
                "too_many_pixels",
                f"{width}x{height} pixels is over the limit of {limits.max_pixels} (decompression bomb?)",
            )
        image.seek(0)
        factor = max(width, height) // max_side if max_side else 1
        if factor >= 2 and kind == "JPEG":
            image.draft("RGB", (width // factor, height // factor))  # picks a scale of 1/2, 1/4 or 1/8
        image.load()
        drawn = image.size
        image = ImageOps.exif_transpose(image)
        turned = image.size != drawn  # a quarter turn: the upright image is height x width
        rgb = image.convert("RGB")
        if factor >= 2 and max(rgb.size) // max_side >= 2:  # not reduced while decoding
            rgb = rgb.reduce(max(rgb.size) // max_side)
    except DecodeError:
        raise
    except OSError as exc:
        text = str(exc)
        if "truncated" in text or "broken data stream" in text or "premature end" in text.lower():
            raise DecodeError("truncated", f"truncated {kind} file: {text}") from None
        raise DecodeError("corrupt", f"corrupt {kind} file: {text}") from None
    except (ValueError, SyntaxError, EOFError, IndexError, struct_error) as exc:
        raise DecodeError("corrupt", f"corrupt {kind} file: {exc}") from None
    upright = (height, width) if turned else (width, height)
    return DecodedImage(
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        format=kind,
        width=upright[0],
        height=upright[1],
        pixels=np.asarray(rgb),
        scale=rgb.width / upright[0],
    )

