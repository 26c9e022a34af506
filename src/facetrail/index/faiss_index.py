"""Exact FAISS index (flat L2 with an id map) in one file: the index of earlier versions, now used
only to compare against (tests) and to read such a file (`open_index` replaces it with the store)."""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

from .base import VectorIndex


class FaissIndex(VectorIndex):
    kind = "faiss-flat"

    def __init__(self, path: Path, dim: int = 128) -> None:
        self.path = Path(path)
        self.dim = dim
        if self.path.exists():
            self._index = faiss.read_index(str(self.path))
            if self._index.d != dim:
                raise ValueError(f"{self.path} holds {self._index.d}-d vectors, expected {dim}")
        else:
            self._index = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))

    def reset(self) -> None:
        """Start empty (the file is replaced at the next save)."""
        self._index = faiss.IndexIDMap2(faiss.IndexFlatL2(self.dim))

    def __len__(self) -> int:
        return self._index.ntotal

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64)
            )

    def remove(self, ids: np.ndarray) -> int:
        if not len(ids):
            return 0
        return int(self._index.remove_ids(np.asarray(ids, dtype=np.int64)))

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if self._index.ntotal == 0:
            n = len(queries)
            return np.full((n, k), np.inf, np.float32), np.full((n, k), -1, np.int64)
        squared, ids = self._index.search(queries, k)
        return np.sqrt(np.maximum(squared, 0)), ids

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        faiss.write_index(self._index, str(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
