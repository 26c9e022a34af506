"""FaceEngine: detector + embedder, the one entry point the rest of facetrail uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Settings
from .types import Detector, Embedder, Face


@dataclass
class FaceEngine:
    detector: Detector
    embedder: Embedder
    min_face_size: int = 20

    @property
    def model_name(self) -> str:
        return self.embedder.name

    def faces(self, image: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 image, largest first."""
        detections = [
            d
            for d in self.detector.detect(image)
            if min(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= self.min_face_size
        ]
        faces = self.embedder.embed(image, detections)
        return sorted(faces, key=lambda f: (-f.area, f.box))


def load_engine(settings: Settings) -> FaceEngine:
    """The default engine (dlib), configured from settings. Loading takes about a second."""
    from .dlib_backend import CascadeDetector, CnnDetector, DlibEmbedder, HogDetector

    hog = HogDetector(settings.detect_max_side, settings.detect_min_side)
    cnn = CnnDetector() if settings.cnn_fallback_max_side else None
    detector = CascadeDetector(hog, cnn, settings.cnn_fallback_max_side)
    return FaceEngine(detector, DlibEmbedder(), settings.min_face_size)
