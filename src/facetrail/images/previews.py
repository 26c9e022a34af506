"""Thumbnails and face crops, made from the decoded pixels at ingest (in the analysis processes)
and kept by store/media.py. JPEG bytes out; the web app also uses `make_crop` for query faces."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

THUMB_SIDE = 320
CROP_SIDE = 160
CROP_MARGIN = 0.25


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
