"""One FAISS index folder, several processes: the owner's lock, and a guest's in-memory overlay.

`CompressedIndex` appends rows to ``vectors.f32`` and, when opened for writing, drops the rows
appended after the last save: two processes writing one folder would corrupt it (rows of one
mapped to ids of the other). So the first process to open a folder takes an exclusive ``flock``
on ``LOCK`` and owns it; any other process is a read-only *guest*: the last saved state
(`CompressedIndex.open_read_only`) plus an `Overlay` holding, in memory, the faces its own sync
adds. The database is the truth, so a guest's answers are right; the files catch up when the
owner next syncs.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

try:
    import fcntl
except ImportError:  # not on POSIX: no inter-process lock, every process owns the folder
    fcntl = None  # type: ignore[assignment]


def lock_folder(folder: Path) -> int | None:
    """An exclusive flock on folder/LOCK (its fd; -1 without flock), or None if another process or
    store holds it."""
    if fcntl is None:
        return -1
    fd = os.open(folder / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def lock_holder(folder: Path) -> str:
    """The pid written by the owner of the folder ("?" if unknown)."""
    try:
        return (folder / "LOCK").read_text().strip() or "?"
    except OSError:
        return "?"


class Overlay:
    """A guest's exact in-memory index of the faces it added itself."""

    def __init__(self, dim: int) -> None:
        self._index = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))

    def __len__(self) -> int:
        return self._index.ntotal

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        return int(self._index.remove_ids(ids)) if self._index.ntotal else 0

    def merge(self, found: tuple[np.ndarray, np.ndarray], queries: np.ndarray, k: int):
        """`found` (distances, ids of another index) merged with this overlay's k nearest."""
        if not self._index.ntotal or k <= 0:
            return found
        squared, ids = self._index.search(queries, k)
        distances = np.where(ids >= 0, np.sqrt(np.maximum(squared, 0)), np.inf).astype(np.float32)
        distances = np.concatenate([found[0], distances], axis=1)
        ids = np.concatenate([found[1], ids], axis=1)
        order = np.argsort(distances, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(distances, order, 1), np.take_along_axis(ids, order, 1)
