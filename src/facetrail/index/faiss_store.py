"""The FAISS store (`FaissStore`): exact while small, compressed beyond ``exact_limit``.

* One structure for both regimes, `CompressedIndex` (compressed.py), in ``index_dir``: untrained,
  it is an exact scan of the float32 vectors it keeps in a memory-mapped file. Measured against
  the flat `FaissIndex` (1 query, k=10, 1 OpenMP thread): 0.04 / 0.01 ms at 1k faces,
  0.23 / 0.19 ms at 10k, 1.96 / 1.95 ms at 100k, 7.5 / 11.9 ms at 200k, while opening
  (2 ms vs 105 ms at 200k) and saving (5-25 ms vs 260 ms: nothing but the new rows and the
  id table is written) are much cheaper. So there is no separate flat regime. The flat
  ``faces.faiss`` of earlier versions is deleted by `open_index`; `sync` rebuilds the store
  from the database.
* Above ``exact_limit`` faces (and from 1000 on, the least `CompressedIndex.train` accepts) the
  IVF + 4-bit PQ fast-scan structure is trained on the vectors held, with exact re-ranking,
  and saved. It is trained again when the gallery has grown so much that the number of
  lists `compressed.default_nlist` would pick has doubled ("stale": adds after training are
  encoded with centroids chosen for a smaller gallery and lists grow longer). At open, a
  trained store holding fewer than ``exact_limit / 2`` faces (the limit was raised, or most
  faces were deleted) goes back to exact search.
* Who trains: with ``background=True`` (the web server) a daemon thread, while the current
  structure keeps answering; with ``background=False`` (the default: command-line commands,
  which exit when done and must not leave a thread to be killed) the add that crosses the
  threshold, or `open_index`, trains in the caller's thread. `FaissStore.train_now` trains
  now, in the caller's thread; `FaissStore.wait` waits for a background training.

Concurrency within a process

* One `FaissStore` per folder per process: `open_index`/`load_index` return the object already
  open for that folder while it is alive (`close` ends it for every holder).
* Every call (``search``, ``add``, ``remove``, ``ids``, ``len``, ``save``) holds the store's
  lock (an RLock), so calls from several threads are serialised, searches included.
* Training runs without the lock, on a snapshot: under the lock it notes the row count n and
  copies the deleted flags (rows of the vector file are append-only, so rows < n never
  change); it then trains a copy of the structure on those rows (on a shallow copy of the
  `CompressedIndex` whose state is private to it, so the live object is untouched); under
  the lock again it installs the trained structure and encodes into it the rows added since
  the snapshot (rows >= n). Until then searches are answered by the current structure:
  exact before the first training, the previous compressed one before a retraining.
* Deletions take effect at once, always: a removal flags the row under the lock, and every
  search (exact or compressed, before, during or after a training) filters flagged rows. Rows
  deleted during a training are in the new lists but flagged, so never returned; their codes
  go at the next compaction (`CompressedIndex.save`, when 20 % of the rows are deleted).
* A finished training is saved at once (a background one under the lock).
* Measured (bench of this store, busy 2-core VM): crossing 200k faces, the background training
  took 6.6 s while searches kept being answered exactly (p50 38 ms, 32 ms before it) and adds
  took ~1 ms; then p50 0.86 ms, recall@10 0.996, 70 B/face. At 1 M: 47 s of training, exact
  searches meanwhile 226 ms (144 ms before), then 1.4 ms, 66 B/face.

Concurrency between processes

* `CompressedIndex` appends rows to ``vectors.f32`` and, when opened, truncates the rows
  appended after the last save: two processes writing one folder would corrupt it (rows of
  one mapped to ids of the other). So the first process to open the folder takes an
  exclusive ``flock`` on ``index_dir/LOCK`` and owns it. Another process (e.g. ``facetrail
  search`` while the web server runs) gets a read-only *guest* view: the last saved state,
  memory-mapped without touching any file, plus an in-memory exact overlay for the faces its
  own `sync` adds, and removals flagged in memory. A guest never trains, and its ``save`` does
  nothing: its answers are right (the database is the truth), and the files catch up when
  the owner next syncs. `rebuild` refuses to run in a guest. A guest stays one for its
  lifetime (restart it once the owner has exited to make it the owner).
"""


from __future__ import annotations

import copy
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ..config import Settings
from .compressed import CompressedIndex, default_nlist

try:
    import fcntl
except ImportError:  # not on POSIX: no inter-process lock, every process owns the folder
    fcntl = None  # type: ignore[assignment]

DIM = 128
MIN_TRAIN = 1000  # CompressedIndex.train needs this many vectors
LEGACY_FILES = ("faces.faiss", "faces.tmp")  # the flat FaissIndex of earlier versions
STORE_FILES = ("CURRENT*", "state-*.npz*", "index-*.faiss*", "vectors.f32*")
_NEVER = 2**62  # the inner CompressedIndex never trains by itself: the store decides

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- the FAISS store


def _lock_folder(folder: Path) -> int | None:
    """An exclusive flock on folder/LOCK (its fd), or None if another process or store holds it."""
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


def _lock_holder(folder: Path) -> str:
    try:
        return (folder / "LOCK").read_text().strip() or "?"
    except OSError:
        return "?"


def _read_only(folder: Path, dim: int) -> CompressedIndex:
    """The last saved state of a CompressedIndex folder, touching no file (another process owns it)."""
    for _ in range(50):  # the owner may replace the generation between our reads
        try:
            return _read_only_once(folder, dim)
        except FileNotFoundError:
            time.sleep(0.02)
    return _read_only_once(folder, dim)


def _read_only_once(folder: Path, dim: int) -> CompressedIndex:
    # CompressedIndex.__init__ without its truncation of vectors.f32 and without an append handle
    index = object.__new__(CompressedIndex)
    index.path, index.dim, index.exact_limit = folder, dim, _NEVER
    index._lock = threading.RLock()
    index._gen = 0
    index._row_ids = np.empty(0, np.int64)
    index._deleted = np.empty(0, np.bool_)
    index._index = None
    index.nprobe = index.qprobe = 0
    index._lookup = None
    index._vectors_file = None
    current = folder / "CURRENT"
    if current.exists():
        gen, _rows = (int(v) for v in current.read_text().split())
        with np.load(folder / f"state-{gen}.npz") as state:
            if int(state["dim"]) != dim:
                raise ValueError(f"{folder} holds {int(state['dim'])}-d vectors, expected {dim}")
            index._gen = gen
            index._row_ids = state["row_ids"]
            index._deleted = state["deleted"].copy()
            index.nprobe, index.qprobe = int(state["nprobe"]), int(state["qprobe"])
            trained = int(state["trained"])
        if trained:
            index._index = faiss.read_index(str(folder / f"index-{gen}.faiss"))
            index._configure()
    index._map()  # rows below CURRENT's count are never rewritten (the file is append-only)
    return index


def _shadow(inner: CompressedIndex) -> CompressedIndex:
    """A copy of `inner` sharing its vectors up to now, with private state, to train without the lock.
    (Relies on CompressedIndex's private attributes, as `_read_only_once` and `FaissStore._train`
    do: keep them in step with compressed.py.)"""
    shadow = copy.copy(inner)
    shadow._lock = threading.RLock()
    shadow._index = None
    shadow._row_ids = inner._row_ids  # replaced, never changed in place, by add()
    shadow._deleted = inner._deleted.copy()  # changed in place by remove()
    shadow._vectors = inner._vectors  # a mapping of the rows held now
    shadow._lookup = None
    shadow._vectors_file = None  # training writes nothing
    return shadow


def _nlist(inner: CompressedIndex) -> int:
    return int(inner._index.nlist) if inner._index is not None else 0


def _overlay_search(overlay: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if overlay.ntotal == 0:
        return np.full((len(queries), k), np.inf, np.float32), np.full((len(queries), k), -1, np.int64)
    squared, ids = overlay.search(queries, k)
    return np.where(ids >= 0, np.sqrt(np.maximum(squared, 0)), np.inf).astype(np.float32), ids


def _merge(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], k: int):
    distances = np.concatenate([a[0], b[0]], axis=1)
    ids = np.concatenate([a[1], b[1]], axis=1)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, 1), np.take_along_axis(ids, order, 1)


class FaissStore:
    """The FAISS VectorIndex of a data folder: exact while small, compressed with exact re-ranking
    beyond `exact_limit`, trained in the background or in the caller's thread (see the module doc)."""

    def __init__(
        self, folder: Path, dim: int = DIM, exact_limit: int = 200_000, background: bool = False
    ) -> None:
        self.folder = Path(folder)
        self.dim = dim
        self.exact_limit = exact_limit
        self.background = background
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        fd = _lock_folder(self.folder)
        self.owner = fd is not None
        self.owner_pid = str(os.getpid()) if self.owner else _lock_holder(self.folder)
        self._release = weakref.finalize(self, os.close, fd) if fd is not None and fd >= 0 else None
        if self.owner:
            self._inner = CompressedIndex(self.folder, dim, exact_limit=_NEVER)
            self._overlay = None
        else:
            self._inner = _read_only(self.folder, dim)
            self._overlay = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))
        self._hold = 0
        self._training = False
        self._thread: threading.Thread | None = None
        self.closed = False
        self.training_error: str | None = None  # the last failure, until a training succeeds
        self._retry_at: int | None = None
        self.trainings = 0  # trainings finished by this object
        self.last_training_seconds: float | None = None

    # ------------------------------------------------------------------ state

    @property
    def kind(self) -> str:
        with self._lock:
            return self._inner.kind if self._inner.trained else "faiss-exact"

    @property
    def trained(self) -> bool:
        return self._inner.trained

    @property
    def training(self) -> bool:
        return self._training

    @property
    def state(self) -> str:
        """"training" (the current structure answers meanwhile), "trained" or "exact"."""
        with self._lock:
            return "training" if self._training else "trained" if self._inner.trained else "exact"

    @property
    def threshold(self) -> int:
        """Faces from which the compressed structure is trained."""
        return max(self.exact_limit + 1, MIN_TRAIN)

    @property
    def needs_training(self) -> bool:
        """Above the limit and untrained, or trained for a gallery much smaller than today's."""
        with self._lock:
            n = len(self._inner)
            if n < self.threshold:
                return False
            return not self._inner.trained or default_nlist(n) >= 2 * _nlist(self._inner)

    # ------------------------------------------------------------------ VectorIndex

    def __len__(self) -> int:
        with self._lock:
            return len(self._inner) + (self._overlay.ntotal if self._overlay is not None else 0)

    def ids(self) -> np.ndarray:
        with self._lock:
            held = self._inner.ids()
            if self._overlay is not None and self._overlay.ntotal:
                held = np.concatenate([held, faiss.vector_to_array(self._overlay.id_map).astype(np.int64)])
            return held

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self._lock:
            self._check_open()
            if self._overlay is not None:
                self._overlay.add_with_ids(vectors, ids)
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
            if self._overlay is not None and self._overlay.ntotal:
                removed += int(self._overlay.remove_ids(ids))
            return removed

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        with self._lock:
            self._check_open()
            found = self._inner.search(queries, k)
            if self._overlay is not None and self._overlay.ntotal and k > 0:
                found = _merge(found, _overlay_search(self._overlay, queries, k), k)
            return found

    def save(self) -> None:
        """Persist (atomically, see CompressedIndex.save); a guest saves nothing."""
        with self._lock:
            if self.owner and not self.closed:
                self._inner.save()

    # ------------------------------------------------------------------ training

    @contextmanager
    def training_held(self) -> Iterator[FaissStore]:
        """No training while inside (e.g. during a sync); on leaving, settle the regime once."""
        with self._lock:
            self._hold += 1
        try:
            yield self
        finally:
            with self._lock:
                self._hold -= 1
                if not self._hold:
                    self._settle()

    def _settle(self) -> None:
        if not self.owner or self.closed or self._training:
            return
        inner = self._inner
        if inner.trained and len(inner) < self.exact_limit // 2:  # back to exact search
            inner._index = None
            inner.nprobe = inner.qprobe = 0
            inner.save()
        self._maybe_train()

    def _maybe_train(self) -> None:
        """Under the lock: start a training if one is due (in a thread, or here)."""
        if not self.owner or self.closed or self._training or not self.needs_training:
            return
        if self._retry_at is not None and len(self._inner) < self._retry_at:
            return  # the last training failed: try again once the gallery has grown by 10 %
        self._training = True
        if self.background:
            self._thread = threading.Thread(
                target=self._run_training, name="facetrail-index-training", daemon=True
            )
            self._thread.start()
        else:
            self._run_training()

    def _run_training(self, raise_errors: bool = False) -> None:
        try:
            self._train()
        except Exception as exc:
            self.training_error = f"{type(exc).__name__}: {exc}"
            self._retry_at = len(self._inner) * 11 // 10 + 1
            if raise_errors:
                raise
            log.exception("training the compressed index of %s failed (searches stay as they were)", self.folder)
        finally:
            with self._lock:
                self._training = False
                if self._thread is threading.current_thread():
                    self._thread = None
                    self._maybe_train()  # the gallery may have grown past another threshold meanwhile

    def _train(self) -> None:
        started = time.monotonic()
        with self._lock:
            inner = self._inner
            shadow = _shadow(inner)
            snapshot_rows = len(shadow._row_ids)
        shadow.train()  # k-means and encoding of the snapshot: the long part, without the lock
        with self._lock:
            if self.closed or self._inner is not inner:  # closed or rebuilt meanwhile
                return
            inner._index = shadow._index
            inner.nprobe = shadow.nprobe
            inner._configure()
            rows = np.arange(snapshot_rows, len(inner._row_ids), dtype=np.int64)
            rows = rows[~inner._deleted[rows]]
            if len(rows):  # added during the training
                inner._encode(np.ascontiguousarray(inner._vectors[rows]), rows)
            inner.save()
            self.trainings += 1
            self.training_error = None
            self._retry_at = None
            self.last_training_seconds = time.monotonic() - started

    def train_now(self) -> None:
        """Train (or retrain) the compressed structure now, in this thread, and save it. Other threads'
        searches are answered meanwhile; raises if this is a guest or holds under 1000 faces."""
        if not self.owner:
            raise RuntimeError(f"{self.folder} is owned by another process (pid {self.owner_pid})")
        while True:
            self.wait()
            with self._lock:
                self._check_open()
                if not self._training:
                    if len(self._inner) < MIN_TRAIN:
                        raise ValueError(f"need at least {MIN_TRAIN} faces to train, have {len(self._inner)}")
                    self._retry_at = None
                    self._training = True
                    break
            time.sleep(0.05)  # another thread's train_now
        self._run_training(raise_errors=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background training (and any it chains) to finish; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                thread = self._thread
            if thread is None or thread is threading.current_thread():
                return True
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False

    # ------------------------------------------------------------------ lifetime

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"the index in {self.folder} is closed")

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
            self._inner = CompressedIndex(self.folder, self.dim, exact_limit=_NEVER)
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
            return f"gen{self._inner._gen}+rows{len(self._inner)}/trained{self.trainings}"

    def status(self) -> dict[str, Any]:
        with self._lock:
            inner = self._inner
            held = inner.status()
            overlay = self._overlay.ntotal if self._overlay is not None else 0
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
            store = FaissStore(folder, DIM, exact_limit=settings.exact_limit, background=background)
            _stores[key] = store
        else:
            store.exact_limit = settings.exact_limit
            store.background = store.background or background
    return store


