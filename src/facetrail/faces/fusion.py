"""Two descriptors of one face joined into one vector: score-level fusion that a vector index
can search. Each part is scaled by the mean distance between different people in its own
space (measured on the dev set, bench/models.py), so both count alike, and divided by sqrt(2):
the Euclidean distance between joined vectors is then the root mean square of the two scaled
distances (about 1 between strangers), which an ordinary L2 index ranks."""

from __future__ import annotations

import math

import numpy as np

from .types import Detection, Embedder, Face

# Mean distance between different people's faces on the dev set (bench/models.py).
DLIB_IMPOSTOR_MEAN = 0.845
SFACE_IMPOSTOR_MEAN = 1.365


class FusionEmbedder:
    name = "fusion_dlib_sface"

    def __init__(self, first: Embedder, second: Embedder,
                 spreads: tuple[float, float] = (DLIB_IMPOSTOR_MEAN, SFACE_IMPOSTOR_MEAN)) -> None:
        self.parts = (first, second)
        self.weights = tuple(1 / (s * math.sqrt(2)) for s in spreads)
        self.dim = first.dim + second.dim

    def embed(self, image: np.ndarray, detections: list[Detection]) -> list[Face]:
        """Faces both parts could embed; box, score and landmarks from the second part's view
        (the detector's five landmarks)."""
        first, second = (part.embed(image, detections) for part in self.parts)
        by_box = {f.box: f for f in first}
        return [
            Face(box=f.box, score=f.score, detector=f.detector, landmarks=f.landmarks,
                 embedding=np.concatenate([by_box[f.box].embedding * self.weights[0],
                                           f.embedding * self.weights[1]]).astype(np.float32))
            for f in second
            if f.box in by_box
        ]
