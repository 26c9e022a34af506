"""The FAISS store (`FaissStore`): the VectorIndex of a data folder, exact while small, compressed
beyond ``exact_limit``.

* One structure for both regimes, `CompressedIndex` (compressed.py), in ``index_dir``: untrained,
  it is an exact scan of the float32 vectors it keeps in a memory-mapped file, as fast as a flat
  FAISS index and much cheaper to open and save (only new rows and the id table are written), so
  there is no separate flat regime. The flat ``faces.faiss`` of earlier versions is deleted by
  `open_index`; `sync` rebuilds the store from the database.
* When to train and in which thread: training.py (the store owns the one training policy).
* One process writes a folder, others get a read-only guest view: sharing.py. A guest never
  trains, its ``save`` does nothing, `reset` (so `rebuild`) refuses to run in it; it stays a guest
  for its lifetime.

Concurrency within a process

* One `FaissStore` per folder per process: `store_for` (so `open_index`/`load_index`) returns the
  object already open for that folder while it is alive (`close` ends it for every holder).
* Every call (``search``, ``add``, ``remove``, ``ids``, ``len``, ``save``) holds the store's lock
  (an RLock): calls from several threads are serialised, searches included. Only the long part of
  a training runs without it, on a snapshot.
* Deletions take effect at once, always: a removal flags the row under the lock and every search
  (exact or compressed, before, during or after a training) filters flagged rows.

Figures (training times, latencies during a training): docs/figures.md (vector index).
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..faces.registry import model_info
from .base import VectorIndex
from .compressed import CompressedIndex
from .sharing import Overlay, lock_folder, lock_holder
from .training import StoreTraining

DIM = 128
LEGACY_FILES = ("faces.faiss", "faces.tmp")  # the flat FaissIndex of earlier versions
STORE_FILES = ("CURRENT*", "state-*.npz*", "index-*.faiss*", "vectors.f32*")


def remove_legacy_files(folder: Path) -> None:
    """Delete the flat index of an earlier version (`sync` rebuilds the store from the database)."""
    for name in LEGACY_FILES:
        (folder / name).unlink(missing_ok=True)


class FaissStore(StoreTraining, VectorIndex):
    """The FAISS VectorIndex of a data folder: exact while small, compressed with exact re-ranking
    beyond `exact_limit`, trained in the background or in the caller's thread (see training.py)."""

    trainable = True

    def __init__(
        self, folder: Path, dim: int = DIM, exact_limit: int = 200_000, background: bool = False
    ) -> None:
        self.folder = Path(folder)
        self.dim = dim
        self.exact_limit = exact_limit
        self.background = background
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        fd = lock_folder(self.folder)
        self.owner = fd is not None
        self._owner_pid = str(os.getpid()) if self.owner else lock_holder(self.folder)
        self._release = weakref.finalize(self, os.close, fd) if fd is not None and fd >= 0 else None
        if self.owner:
            self._inner = CompressedIndex(self.folder, dim)
            self._overlay: Overlay | None = None
        else:
            self._inner = CompressedIndex.open_read_only(self.folder, dim)
            self._overlay = Overlay(dim)
        self.closed = False
        self._init_training()

    # ------------------------------------------------------------------ state

    @property
    def owner_pid(self) -> str:
        return self._owner_pid

    @property
    def kind(self) -> str:
        with self._lock:
            return self._inner.kind if self._inner.trained else "faiss-exact"

    @property
    def trained(self) -> bool:
        return self._inner.trained

    @property
    def state(self) -> str:
        """"training" (the current structure answers meanwhile), "trained" or "exact"."""
        with self._lock:
            return "training" if self._training else "trained" if self._inner.trained else "exact"

    # ------------------------------------------------------------------ VectorIndex

    def __len__(self) -> int:
        with self._lock:
            return len(self._inner) + (len(self._overlay) if self._overlay is not None else 0)

    def ids(self) -> np.ndarray:
        with self._lock:
            held = self._inner.ids()
            if self._overlay is not None and len(self._overlay):
                held = np.concatenate([held, self._overlay.ids()])
            return held

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self._lock:
            self._check_open()
            if self._overlay is not None:
                self._overlay.add(ids, vectors)
            else:
                self._inner.add(ids, vectors)
                if not self._hold:
                    self._maybe_train()

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return 0
        with self._lock:
            self._check_open()
            removed = self._inner.remove(ids)
            if self._overlay is not None:
                removed += self._overlay.remove(ids)
            return removed

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        with self._lock:
            self._check_open()
            found = self._inner.search(queries, k)
            if self._overlay is not None:
                found = self._overlay.merge(found, queries, k)
            return found

    def save(self) -> None:
        """Persist (atomically, see CompressedIndex.save); a guest saves nothing."""
        with self._lock:
            if self.owner and not self.closed:
                self._inner.save()

    # ------------------------------------------------------------------ lifetime

    def reset(self) -> None:
        """Delete every index file and start empty (the owner only; for a rebuild)."""
        if not self.owner:
            raise RuntimeError(
                f"the index in {self.folder} is in use by another process (pid {self.owner_pid}); stop it first"
            )
        self.wait()
        with self._lock:
            self._check_open()
            self._inner.close()
            for pattern in (*STORE_FILES, *LEGACY_FILES):
                for path in self.folder.glob(pattern):
                    path.unlink(missing_ok=True)  # unlinked, not truncated: guests keep their mapping
            self._inner = CompressedIndex(self.folder, self.dim)
            self.training_error = None
            self._retry_at = None

    def close(self) -> None:
        """Wait for a training, then release the files and the folder lock (for every holder of this object)."""
        self.wait()
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self.owner:
                self._inner.close()
            if self._release is not None:
                self._release()
        with _stores_lock:
            key = str(self.folder.resolve())
            if _stores.get(key) is self:
                del _stores[key]

    # ------------------------------------------------------------------ reporting

    @property
    def version(self) -> str:
        """Which state of the index answers: the saved generation, the rows since, the trainings."""
        with self._lock:
            return f"gen{self._inner.generation}+rows{len(self._inner)}/trained{self.trainings}"

    def status(self) -> dict[str, Any]:
        with self._lock:
            inner = self._inner
            held = inner.status()
            overlay = len(self._overlay) if self._overlay is not None else 0
            faces = len(inner) + overlay
            vectors_bytes = held["rows"] * self.dim * 4
            # exact: every search reads all the mapped vectors; compressed: the structure, plus the
            # few re-ranked rows read from the mapped file on demand
            memory = held["index_bytes"] + (0 if inner.trained else vectors_bytes) + overlay * (self.dim * 4 + 8)
            files = {p.name: p.stat().st_size for p in sorted(self.folder.iterdir()) if p.is_file()}
            status: dict[str, Any] = {
                "kind": self.kind,
                "faces": faces,
                "training": self.state,
                "needs_training": self.needs_training,
                "exact_limit": self.exact_limit,
                "train_at": self.threshold,
                "memory_bytes": int(memory),
                "bytes_per_face": memory / max(faces, 1),
                "index_bytes": held["index_bytes"],
                "rows": held["rows"],
                "deleted_rows": held["deleted_rows"],
                "files": files,
                "disk_bytes": sum(files.values()),
                "mode": "owner" if self.owner else f"read-only guest (pid {self.owner_pid} writes this index)",
                "background_training": self.background,
                "trainings": self.trainings,
                "last_training_seconds": self.last_training_seconds,
                "training_error": self.training_error,
            }
            for key in ("nlist", "nprobe", "top_level_cells", "top_level_probes", "pq", "in_lists"):
                if key in held:
                    status[key] = held[key]
            if overlay:
                status["guest_overlay_faces"] = overlay
            return status


_stores: weakref.WeakValueDictionary[str, FaissStore] = weakref.WeakValueDictionary()
_stores_lock = threading.Lock()


def store_for(settings: Settings, background: bool) -> FaissStore:
    """The store of this data folder: the one open in this process, or a new one."""
    folder = settings.index_dir
    key = str(folder.resolve())
    with _stores_lock:
        store = _stores.get(key)
        if store is None or store.closed:
            store = FaissStore(folder, model_info(settings.face_model).dim, exact_limit=settings.exact_limit, background=background)
            _stores[key] = store
        else:
            store.exact_limit = settings.exact_limit
            store.background = store.background or background
    return store
