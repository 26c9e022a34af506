"""Turn untrusted bytes into RGB pixels, or a clear reason why not.

Checks, in order: empty, too many bytes, magic bytes (a known image format), pixel count
from the header before any pixel is decoded (decompression bombs), the memory the decode will
need, also from the header (the decode budget: reduce a JPEG while decoding, reduce any image
whose frame fits as it becomes RGB, or refuse as `too_much_memory`), then a full decode
(truncated or corrupt data). Multi-frame files (GIF, TIFF, WebP, PNG) give their first frame;
EXIF orientation is applied; high-depth images (16-bit, 32-bit integer, float) become 8-bit.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from struct import error as struct_error

import numpy as np
from PIL import Image, ImageFile

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


# Decoding memory, counted before any pixel is decoded (`working_bytes`). Pillow holds a decoded
# pixel in 1 byte (modes 1, L, P), 2 (I;16) or 4 (I, F and every multi-band mode: RGB too).
# `decode` turns that frame into the H x W x 3 uint8 array strip by strip (EXIF turn, 8-bit
# conversion and any reduction done per strip), so a decode needs the frame plus the array.
# Some decoders hold their own copy while loading: measured in bench/hostile.py.
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_HIGH_DEPTH = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
_DECODER_BYTES = {"WEBP": 12}  # bytes per pixel libwebp and Pillow hold besides the frame while loading
_STRIP = 64  # rows converted at a time
_MAX_REDUCE = 8  # the most an image is reduced (on each side) to fit the budget
_STRIP_BYTES = 32  # per pixel of a strip: its crop, 8-bit and RGB copies, the array (at most)
DEFAULT_DECODE_BUDGET = 128 * 1024 * 1024
_MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_decode_bytes: int = DEFAULT_DECODE_BUDGET  # memory one decode may use, see working_bytes

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(settings.max_image_bytes, settings.max_image_pixels, settings.decode_budget_bytes)


def working_bytes(kind: str, mode: str, size: tuple[int, int], factor: int = 1) -> int:
    """Bytes a decode needs, from the header: the frame (width x height x bytes per pixel of
    Pillow's `mode`), and at once either the decoder's own copy while loading or the 3-byte RGB
    array (`factor` times smaller on each side) it is turned into, with one strip in the making."""
    width, height = size
    frame = width * height * _PIXEL_BYTES.get(mode, 4)
    out = -(-width // factor) * -(-height // factor) * 3
    strip = width * min(height, max(1, _STRIP // factor) * factor) * _STRIP_BYTES
    return frame + max(width * height * _DECODER_BYTES.get(kind, 0), out + strip)


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


# EXIF orientation -> (Pillow transpose of a strip, where the strip's rows land in the output).
_TURNS = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT, "rows"),
    3: (Image.Transpose.ROTATE_180, "rows_reversed"),
    4: (Image.Transpose.FLIP_TOP_BOTTOM, "rows_reversed"),
    5: (Image.Transpose.TRANSPOSE, "columns"),
    6: (Image.Transpose.ROTATE_270, "columns_reversed"),
    7: (Image.Transpose.TRANSVERSE, "columns_reversed"),
    8: (Image.Transpose.ROTATE_90, "columns"),
}


def decode(data: bytes, limits: Limits = Limits(), max_side: int | None = None) -> DecodedImage:
    """Decode image bytes to RGB pixels. Raises DecodeError with a reason code.

    `max_side` (for query photos, where speed matters more than the last pixel): an image at
    least twice that size is reduced by a whole factor, keeping its longest side >= max_side.
    JPEGs are decoded reduced (1/2, 1/4 or 1/8 scale, several times faster than in full).
    An image whose decode would need more than `limits.max_decode_bytes` is reduced within it
    (a JPEG while decoding; any image as it is turned into RGB, when its frame alone fits), or
    refused as `too_much_memory`."""
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
        image.seek(0)  # multi-frame: the first frame only
        wanted = max(width, height) // max_side if max_side else 1
        if kind == "JPEG":
            _draft(image, wanted, limits.max_decode_bytes)
        drawn = image.size
        least = max(1, max(drawn) // max_side if max_side else 1)
        factor = next((f for f in range(least, max(least, _MAX_REDUCE) + 1)
                       if working_bytes(kind, image.mode, drawn, f) <= limits.max_decode_bytes), None)
        if factor is None:
            need = working_bytes(kind, image.mode, drawn, least)
            raise DecodeError(
                "too_much_memory",
                f"{width}x{height} {kind} ({image.mode}) needs {-(-need // _MB)} MB to decode, over the "
                f"budget of {limits.max_decode_bytes // _MB} MB",
            )
        image.load()
        if image.size != drawn or working_bytes(kind, image.mode, drawn, factor) > limits.max_decode_bytes:
            raise DecodeError("corrupt", f"corrupt {kind} file: its frame is not what its header says")
        pixels, turned = _to_rgb(image, factor)
        image.close()
    except DecodeError:
        raise
    except OSError as exc:
        text = str(exc)
        if "truncated" in text or "broken data stream" in text or "premature end" in text.lower():
            raise DecodeError("truncated", f"truncated {kind} file: {text}") from None
        raise DecodeError("corrupt", f"corrupt {kind} file: {text}") from None
    except (ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, struct_error) as exc:
        raise DecodeError("corrupt", f"corrupt {kind} file: {exc}") from None
    upright = (height, width) if turned else (width, height)
    return DecodedImage(
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        format=kind,
        width=upright[0],
        height=upright[1],
        pixels=pixels,
        scale=pixels.shape[1] / upright[0],
    )


def _draft(image: Image.Image, wanted: int, budget: int) -> None:
    """Have a JPEG decoded at 1/2, 1/4 or 1/8 scale: at least `wanted` times smaller when it
    can be, and small enough for the budget."""
    width, height = image.size
    for scale in (1, 2, 4, 8):
        size = (-(-width // scale), -(-height // scale))
        if (scale * 2 > wanted or scale == 8) and working_bytes("JPEG", image.mode, size) <= budget:
            break
    if scale > 1:
        image.draft("RGB", (max(1, width // scale), max(1, height // scale)))


def _to_rgb(image: Image.Image, factor: int) -> tuple[np.ndarray, bool]:
    """The loaded frame as an upright H x W x 3 uint8 array, `factor` times smaller on each side,
    made strip by strip so that no second full-size copy of the frame exists; and whether EXIF
    turned it a quarter (the upright image is height x width)."""
    width, height = image.size
    turn, lands = _TURNS.get(image.getexif().get(0x0112, 1), (None, "rows"))
    out_w, out_h = -(-width // factor), -(-height // factor)
    if lands.startswith("columns"):
        out_w, out_h = out_h, out_w
    pixels = np.empty((out_h, out_w, 3), np.uint8)
    depth = _depth_scale(image) if image.mode in _HIGH_DEPTH else None
    step = max(1, _STRIP // factor) * factor
    for top in range(0, height, step):
        strip = image.crop((0, top, width, min(height, top + step)))
        strip = _eight_bit(strip, depth) if depth else strip.convert("RGB")
        if factor > 1:
            strip = strip.reduce(factor)
        if turn is not None:
            strip = strip.transpose(turn)
        block = np.asarray(strip)
        start = top // factor
        if lands == "rows":
            pixels[start : start + block.shape[0]] = block
        elif lands == "rows_reversed":
            pixels[out_h - start - block.shape[0] : out_h - start] = block
        elif lands == "columns":
            pixels[:, start : start + block.shape[1]] = block
        else:
            pixels[:, out_w - start - block.shape[1] : out_w - start] = block
    return pixels, lands.startswith("columns")


def _depth_scale(image: Image.Image) -> tuple[float, float]:
    """(offset, gain) taking a high-depth image (16-bit, 32-bit integer or float) to 0..255:
    16-bit ranges are divided by 257, floats within 0..1 multiplied by 255, values already
    within 0..255 kept, others stretched."""
    if image.mode.startswith("I;16"):
        return 0.0, 1 / 257
    low, high = image.getextrema()
    if not (np.isfinite(low) and np.isfinite(high)):
        return 0.0, 1.0
    if image.mode == "F" and low >= 0 and high <= 1:
        return 0.0, 255.0
    if low >= 0 and high <= 255:
        return 0.0, 1.0
    if low >= 0 and high <= 65535:
        return 0.0, 1 / 257
    return float(low), 255 / (float(high) - float(low))


def _eight_bit(strip: Image.Image, depth: tuple[float, float]) -> Image.Image:
    offset, gain = depth
    values = np.asarray(strip).astype(np.float32)
    values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    values = np.clip((values - offset) * gain, 0, 255)
    return Image.fromarray(values.astype(np.uint8), "L").convert("RGB")
