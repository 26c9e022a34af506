"""The VectorIndex interface: nearest neighbours of face descriptors, keyed by face id.

Every backend (the FAISS store, Milvus, the flat FAISS file of earlier versions) implements it, and
code outside this package uses an index through it only: no ``isinstance`` on a backend, no
``getattr`` for optional parts. What only some backends have (a training, a folder shared between
processes, a version) has a default here that means "nothing of the kind".
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


class VectorIndex(ABC):
    kind: str  # what answers searches, e.g. "faiss-exact", "faiss-ivf64-pq64x4fs-rerank", "milvus"
    dim: int

    # ------------------------------------------------------------------ vectors

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def ids(self) -> np.ndarray:
        """All face ids held (int64)."""

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add float32 vectors (N x dim) under int64 face ids (ids must not be present yet)."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ids; returns how many were present. Removed ids are never returned again."""

    @abstractmethod
    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """For each query row: (distances, ids) of the k nearest, Euclidean, ascending; id -1 pads."""

    # ------------------------------------------------------------------ lifetime

    @abstractmethod
    def save(self) -> None:
        """Persist atomically (a crash leaves the old or the new state, never a torn one)."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every vector and start empty (a rebuild starts from here)."""

    def close(self) -> None:
        """Release files and connections; the object is not used afterwards."""

    # ------------------------------------------------------------------ reporting

    @property
    def version(self) -> str | None:
        """Which state of the index answers (recorded with each search), if the backend can say."""
        return None

    def status(self) -> dict[str, Any]:
        """What `facetrail index-status` shows of this backend (`index_status` adds kind, size and
        location): at least ``training`` (a word: "exact", "training", "trained", ...),
        ``needs_training``, ``memory_bytes`` and ``bytes_per_face`` (None: not measurable from
        here), ``files`` (name -> bytes) and ``disk_bytes``."""
        return {
            "training": "exact",
            "needs_training": False,
            "memory_bytes": None,
            "bytes_per_face": None,
            "files": {},
            "disk_bytes": 0,
        }

    # ------------------------------------------------------------------ maintenance (training)

    trainable: bool = False
    """True if this code trains the search structure (FAISS store); False if it is exact or the
    engine builds its own (Milvus): then the members below do nothing."""

    owner: bool = True
    """False if another process writes this index: this one may search and hold changes in memory,
    but neither trains nor saves."""

    trainings: int = 0
    """Trainings finished by this object."""

    @property
    def owner_pid(self) -> str:
        """The process that writes this index."""
        return str(os.getpid())

    @property
    def threshold(self) -> int:
        """Faces from which a trained structure answers instead of an exact scan."""
        return 2**62

    @property
    def needs_training(self) -> bool:
        """A training is due (`maintain` would start one)."""
        return False

    def maintain(self) -> None:
        """Do the upkeep due now (train, retrain, go back to exact search): in a background thread
        if the backend was opened for that, else here. Called after bulk changes."""

    @contextmanager
    def maintenance_paused(self) -> Iterator[VectorIndex]:
        """No upkeep while inside (e.g. during a sync); `maintain` once on leaving."""
        try:
            yield self
        finally:
            self.maintain()

    def train_now(self) -> None:
        """Train (or retrain) now, in this thread; raises if this index cannot be trained."""
        raise RuntimeError(f"{self.kind}: nothing to train")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background upkeep to finish; False on timeout."""
        return True
