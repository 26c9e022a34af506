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
    model: str = ""  # its name in the registry (faces/registry.py); recorded with every vector

    @property
    def model_name(self) -> str:
        return self.model or self.embedder.name

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def faces(self, image: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 image, largest first."""
        detections = [
            d
            for d in self.detector.detect(image)
            if min(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= self.min_face_size
        ]
        faces = self.embedder.embed(image, detections)
        return sorted(faces, key=lambda f: (-f.area, f.box))


def load_engine(settings: Settings, model: str | None = None) -> FaceEngine:
    """The engine of `model` (default: the active model, `settings.face_model`), configured
    from settings, after its weight files are checked (faces/registry.py). About a second."""
    from .registry import active, load

    return load(model or active(settings).name, settings)
