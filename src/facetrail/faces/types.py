"""Plain data passed between the face-engine stages, and the interfaces a backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

Box = tuple[int, int, int, int]
"""(left, top, right, bottom) in pixels of the original image; right/bottom exclusive."""


@dataclass(frozen=True)
class Detection:
    """A face found by a detector, before alignment and embedding."""

    box: Box
    score: float
    detector: str
    landmarks: tuple[tuple[float, float], ...] | None = None  # five points, if the detector gives them


@dataclass(frozen=True)
class Face:
    """A detected, aligned and embedded face."""

    box: Box
    score: float
    detector: str
    landmarks: tuple[tuple[float, float], ...]
    embedding: np.ndarray = field(repr=False)

    @property
    def size(self) -> int:
        """Face size in pixels: the shorter side of the box."""
        left, top, right, bottom = self.box
        return min(right - left, bottom - top)

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return (right - left) * (bottom - top)

    def scaled(self, factor: float) -> Face:
        """The same face in a copy of the image `factor` times the size."""
        return replace(
            self,
            box=tuple(round(v * factor) for v in self.box),
            landmarks=tuple((x * factor, y * factor) for x, y in self.landmarks),
        )


class Detector(Protocol):
    """Finds faces in an RGB uint8 image (H x W x 3)."""

    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...


class Embedder(Protocol):
    """Aligns and embeds detected faces; embeddings are float32 unit-free vectors of size `dim`."""

    name: str
    dim: int

    def embed(self, image: np.ndarray, detections: list[Detection]) -> list[Face]: ...
