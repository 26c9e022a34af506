"""Thumbnails and face crops, made from the decoded pixels at ingest (in the analysis processes)
and kept by store/media.py. JPEG bytes out; the web app also uses `make_crop` for query faces.
`blur_faces` re-renders a thumbnail with some faces made unrecognisable (opt-outs)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

THUMB_SIDE = 320
CROP_SIDE = 160
CROP_MARGIN = 0.25
BLUR_MARGIN = 0.35  # of the face box's size on each side: hair, ears and chin go too
PIXELS_ACROSS = 6  # a blurred face is first reduced to this many blocks across


def _jpeg(picture: Image.Image, quality: int = 82) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def make_thumbnail(pixels: np.ndarray) -> bytes:
    picture = Image.fromarray(pixels)
    picture.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    return _jpeg(picture)


def make_crop(pixels: np.ndarray, box: tuple[int, int, int, int], side: int = CROP_SIDE) -> bytes:
    """A square crop around a face box (with a margin), resized to side x side."""
    height, width = pixels.shape[:2]
    left, top, right, bottom = box
    half = max(right - left, bottom - top) * (0.5 + CROP_MARGIN)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    region = (
        max(0, int(cx - half)),
        max(0, int(cy - half)),
        min(width, int(cx + half)),
        min(height, int(cy + half)),
    )
    picture = Image.fromarray(pixels).crop(region)
    picture.thumbnail((side, side), Image.Resampling.LANCZOS)
    return _jpeg(picture)


def blur_faces(thumbnail: bytes, size: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> bytes:
    """The thumbnail (JPEG bytes) of an image of `size` (width, height in image pixels) with each
    face box (image pixels) and a margin pixelated and blurred beyond recognition."""
    picture = Image.open(io.BytesIO(thumbnail)).convert("RGB")
    scale = picture.width / size[0] if size[0] else 1.0
    for region in (_blur_region(box, scale, picture.size) for box in boxes):
        if region[2] - region[0] < 1 or region[3] - region[1] < 1:
            continue
        patch = picture.crop(region)
        blocks = (max(1, PIXELS_ACROSS), max(1, round(PIXELS_ACROSS * patch.height / max(patch.width, 1))))
        patch = patch.resize(blocks, Image.Resampling.BOX).resize(patch.size, Image.Resampling.NEAREST)
        patch = patch.filter(ImageFilter.GaussianBlur(max(2, patch.width // 6)))
        picture.paste(patch, region[:2])
    return _jpeg(picture)


def _blur_region(box: tuple[int, int, int, int], scale: float, bounds: tuple[int, int]) -> tuple[int, int, int, int]:
    left, top, right, bottom = box
    margin_x, margin_y = (right - left) * BLUR_MARGIN, (bottom - top) * BLUR_MARGIN
    return (max(0, int((left - margin_x) * scale)), max(0, int((top - margin_y) * scale)),
            min(bounds[0], int((right + margin_x) * scale) + 1), min(bounds[1], int((bottom + margin_y) * scale) + 1))
