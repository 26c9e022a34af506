"""The VectorIndex interface: nearest neighbours of face descriptors, keyed by face id."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    kind: str
    dim: int

    def __len__(self) -> int: ...

    def ids(self) -> np.ndarray:
        """All face ids held (int64)."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add float32 vectors (N x dim) under int64 face ids (ids must not be present yet)."""
        ...

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; returns how many were present."""
        ...

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """For each query row: (distances, ids) of the k nearest, Euclidean, ascending; id -1 pads."""
        ...

    def save(self) -> None:
        """Persist atomically (a crash leaves the old or the new file, never a torn one)."""
        ...
