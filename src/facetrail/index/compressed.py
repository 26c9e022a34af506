"""`CompressedIndex`: the face vectors of one folder, searched exactly while untrained and through a
compressed structure (ivfpq.py) with exact re-ranking once trained.

Layout of the folder::

    vectors.f32          float32 rows (N x dim), append-only; row r is the r-th face ever added
    state-<gen>.npz      row -> face id (int64), deleted flags, dim, nprobe, training state
    index-<gen>.faiss    the trained FAISS structure (absent while the index is exact)
    CURRENT              text "<gen> <rows>": which generation is live (replaced atomically)

`save` writes a new generation, fsyncs it, then atomically replaces CURRENT, so a crash leaves the
old or the new generation. Rows appended to vectors.f32 after the last save are dropped on open
(the caller re-adds them, e.g. `facetrail.index.sync`).

* Untrained: a search is an exact scan of the memory-mapped float vectors.
* Trained (`train`, on demand: *when* to train is decided by the owner, `FaissStore`): a query
  is routed to ``nprobe`` lists of PQ codes; the best k' = max(256, 10 k) candidates are
  re-ranked with exact distances read from vectors.f32, so returned distances are exact and the
  PQ error matters only if a true neighbour falls outside the top k'. Later adds are encoded with
  the trained structure.
* Deleted rows are flagged in RAM (1 byte/row) and filtered from every search, so removals take
  effect at once; their codes stay in the lists until `compact` (run by `save` when over 20 % of
  the coded rows are deleted).
* For training without blocking searches: `snapshot` gives a copy sharing the rows held now,
  which can be trained in another thread, and `install` puts its structure into the live index.
  `open_read_only` gives the last saved state of a folder another process writes.

Figures behind these choices: docs/figures.md (vector index).
"""

from __future__ import annotations

import copy
import os
import threading
import time
from pathlib import Path

import faiss
import numpy as np

from . import ivfpq
from .ivfpq import MIN_TRAIN, default_nlist, default_nprobe

__all__ = ["MIN_TRAIN", "CompressedIndex", "default_nlist", "default_nprobe"]

MIN_KPRIME = 256  # candidates re-ranked exactly (at least 10 k)
COMPACT_SHARE = 0.2  # save() re-encodes the lists when this share of rows is deleted
_CHUNK = 500_000


def _fsync_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CompressedIndex:
    """Face vectors of a folder: exact scan while untrained, IVF-PQ fast-scan with exact re-ranking once trained."""

    def __init__(self, path: Path, dim: int = 128, *, _writable: bool = True) -> None:
        self.path = Path(path)
        self.dim = dim
        self._lock = threading.RLock()
        self._gen = 0
        self._row_ids = np.empty(0, np.int64)
        self._deleted = np.empty(0, np.bool_)
        self._index = None  # faiss IndexIVFPQFastScan once trained
        self.nprobe = 0
        self.qprobe = 0
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None  # (sorted live ids, rows)
        self._vectors_file = None  # append handle of vectors.f32; None: read-only
        if _writable:
            self.path.mkdir(parents=True, exist_ok=True)
        rows = self._load()
        if _writable:
            vectors = self.path / "vectors.f32"
            with open(vectors, "ab") as handle:  # drop rows appended after the last save
                handle.truncate(rows * dim * 4)
            self._vectors_file = open(vectors, "ab")  # noqa: SIM115 - kept open for appends, see close()
        self._map()  # rows below CURRENT's count are never rewritten (the file is append-only)

    @classmethod
    def open_read_only(cls, path: Path, dim: int = 128) -> CompressedIndex:
        """The last saved state of a folder that another process writes, touching no file. Removals
        are held in memory; `add` and `save` are refused."""
        for _ in range(50):  # the owner may replace the generation between our reads
            try:
                return cls(path, dim, _writable=False)
            except FileNotFoundError:
                time.sleep(0.02)
        return cls(path, dim, _writable=False)

    def _load(self) -> int:
        """Read the live generation, if any; returns its row count."""
        current = self.path / "CURRENT"
        if not current.exists():
            return 0
        gen, rows = (int(v) for v in current.read_text().split())
        with np.load(self.path / f"state-{gen}.npz") as state:
            if int(state["dim"]) != self.dim:
                raise ValueError(f"{self.path} holds {int(state['dim'])}-d vectors, expected {self.dim}")
            self._gen = gen
            self._row_ids = state["row_ids"]
            self._deleted = state["deleted"].copy()
            self.nprobe, self.qprobe = int(state["nprobe"]), int(state["qprobe"])
            trained = int(state["trained"])
        if trained:
            self._index = faiss.read_index(str(self.path / f"index-{gen}.faiss"))
            self._configure()
        return rows

    # ------------------------------------------------------------------ bookkeeping

    def _map(self) -> None:
        rows = len(self._row_ids)
        self._vectors = (
            np.memmap(self.path / "vectors.f32", np.float32, "r", shape=(rows, self.dim))
            if rows
            else np.empty((0, self.dim), np.float32)
        )

    def _writable(self) -> None:
        if self._vectors_file is None:
            raise RuntimeError(f"{self.path} is open read-only")

    @property
    def kind(self) -> str:
        return (
            f"faiss-ivf{self._index.nlist}-pq{ivfpq.PQ_M}x4fs-rerank"
            if self._index is not None
            else "faiss-ivf-untrained-exact"
        )

    @property
    def trained(self) -> bool:
        return self._index is not None

    @property
    def nlist(self) -> int:
        """Lists of the trained structure (0 while untrained)."""
        return int(self._index.nlist) if self._index is not None else 0

    @property
    def rows(self) -> int:
        """Rows of vectors.f32 in use, deleted ones included."""
        return len(self._row_ids)

    @property
    def generation(self) -> int:
        """The generation last saved or loaded."""
        return self._gen

    def __len__(self) -> int:
        return len(self._row_ids) - int(np.count_nonzero(self._deleted))

    def ids(self) -> np.ndarray:
        return self._row_ids[~self._deleted].copy()

    def _live_lookup(self) -> tuple[np.ndarray, np.ndarray]:
        if self._lookup is None:
            rows = np.flatnonzero(~self._deleted)
            ids = self._row_ids[rows]
            order = np.argsort(ids, kind="stable")
            self._lookup = (ids[order], rows[order])
        return self._lookup

    # ------------------------------------------------------------------ VectorIndex

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self._lock:
            self._writable()
            first = len(self._row_ids)
            for start in range(0, len(ids), _CHUNK):
                self._vectors_file.write(vectors[start : start + _CHUNK].tobytes())
            self._vectors_file.flush()
            self._row_ids = np.concatenate([self._row_ids, ids])
            self._deleted = np.concatenate([self._deleted, np.zeros(len(ids), np.bool_)])
            self._lookup = None
            self._map()
            if self._index is not None:
                ivfpq.encode(self._index, vectors, np.arange(first, first + len(ids), dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids) or not len(self._row_ids):
            return 0
        with self._lock:
            live_ids, rows = self._live_lookup()
            pos = np.minimum(np.searchsorted(live_ids, ids), max(len(live_ids) - 1, 0))
            hit = np.unique(pos[live_ids[pos] == ids]) if len(live_ids) else pos[:0]
            self._deleted[rows[hit]] = True
            self._lookup = None
            return len(hit)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        n = len(queries)
        out_d = np.full((n, k), np.inf, np.float32)
        out_i = np.full((n, k), -1, np.int64)
        if len(self) == 0 or k <= 0:
            return out_d, out_i
        if self._index is None:
            return self._exact(queries, k)
        deleted_share = np.count_nonzero(self._deleted) / len(self._deleted)
        kprime = min(len(self._row_ids), int(max(MIN_KPRIME, 10 * k) / max(0.2, 1 - deleted_share)))
        _, cand = self._index.search(queries, kprime)
        for q in range(n):
            rows = cand[q][cand[q] >= 0]
            rows = rows[~self._deleted[rows]]
            if not len(rows):
                continue
            rows.sort()  # sequential-ish reads from the memory-mapped file
            diff = self._vectors[rows] - queries[q]
            dist = np.einsum("ij,ij->i", diff, diff)
            top = np.argsort(dist, kind="stable")[:k]
            out_d[q, : len(top)] = np.sqrt(dist[top])
            out_i[q, : len(top)] = self._row_ids[rows[top]]
        return out_d, out_i

    def _exact(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(queries)
        out_d = np.full((n, k), np.inf, np.float32)
        out_i = np.full((n, k), -1, np.int64)
        best_d = np.full((n, 0), np.inf, np.float32)
        best_r = np.empty((n, 0), np.int64)
        for start in range(0, len(self._row_ids), _CHUNK):
            block = self._vectors[start : start + _CHUNK]  # a view of the mapped file, no copy
            dead = self._deleted[start : start + _CHUNK]
            want = min(len(block), k + int(np.count_nonzero(dead)))
            d, j = faiss.knn(queries, block, want)
            rows = j + start
            d = np.where(self._deleted[rows], np.inf, d)
            best_d = np.concatenate([best_d, d], axis=1)
            best_r = np.concatenate([best_r, rows], axis=1)
            keep = np.argsort(best_d, axis=1, kind="stable")[:, :k]
            best_d = np.take_along_axis(best_d, keep, 1)
            best_r = np.take_along_axis(best_r, keep, 1)
        found = np.isfinite(best_d)
        m = best_d.shape[1]
        out_d[:, :m] = np.where(found, np.sqrt(np.maximum(best_d, 0)), np.inf)
        out_i[:, :m] = np.where(found, self._row_ids[best_r], -1)
        return out_d, out_i

    # ------------------------------------------------------------------ training

    def train(
        self, nlist: int | None = None, nprobe: int | None = None, sample: int = 1_000_000, seed: int = 1234
    ) -> None:
        """(Re)build the compressed structure from the live vectors held now (at least `MIN_TRAIN`)."""
        with self._lock:
            live = np.flatnonzero(~self._deleted)
            if len(live) < MIN_TRAIN:
                raise ValueError(f"need at least {MIN_TRAIN} vectors to train")
            nlist = nlist or default_nlist(len(live))
            rng = np.random.default_rng(seed)
            pick = np.sort(rng.choice(live, min(sample, len(live)), replace=False))
            self._index = ivfpq.build(np.ascontiguousarray(self._vectors[pick]), nlist, seed)
            self.nprobe = nprobe or default_nprobe(nlist, len(live))
            self._configure()
            self._encode_all()

    def snapshot(self) -> CompressedIndex:
        """A copy sharing the rows held now, with state of its own and no file handle: train it
        (e.g. in another thread, without this index's lock), then `install` it here."""
        with self._lock:
            shadow = copy.copy(self)
            shadow._lock = threading.RLock()
            shadow._index = None
            shadow._deleted = self._deleted.copy()  # changed in place by remove(); _row_ids is replaced by add()
            shadow._lookup = None
            shadow._vectors_file = None  # a snapshot writes nothing
            return shadow

    def install(self, trained: CompressedIndex) -> None:
        """Answer with the structure of `trained` (a trained `snapshot` of this index): rows added
        since the snapshot are encoded into it; rows deleted since stay flagged."""
        with self._lock:
            self._index = trained._index
            self.nprobe = trained.nprobe
            self._configure()
            rows = np.arange(trained.rows, len(self._row_ids), dtype=np.int64)
            rows = rows[~self._deleted[rows]]
            if len(rows):
                ivfpq.encode(self._index, np.ascontiguousarray(self._vectors[rows]), rows)

    def untrain(self) -> None:
        """Drop the compressed structure: back to exact search (saved at the next `save`)."""
        with self._lock:
            self._index = None
            self.nprobe = self.qprobe = 0

    def _configure(self) -> None:
        self.qprobe = ivfpq.configure(self._index, self.nprobe)

    def set_nprobe(self, nprobe: int) -> None:
        """Lists probed per query (more: higher recall, slower)."""
        self.nprobe = int(nprobe)
        if self._index is not None:
            self._configure()

    def _encode_all(self) -> None:
        self._index.reset()
        live = np.flatnonzero(~self._deleted)
        for start in range(0, len(live), _CHUNK):
            rows = live[start : start + _CHUNK]
            ivfpq.encode(self._index, np.ascontiguousarray(self._vectors[rows]), rows)

    def compact(self) -> None:
        """Drop deleted rows' codes from the lists (the float file keeps them; rows stay stable)."""
        with self._lock:
            if self._index is not None:
                self._encode_all()

    # ------------------------------------------------------------------ persistence

    def save(self) -> None:
        with self._lock:
            self._writable()
            if self._index is not None and self._deleted.any():
                in_lists = self._index.ntotal
                if (in_lists - len(self)) > COMPACT_SHARE * max(in_lists, 1):
                    self.compact()
            self._vectors_file.flush()
            os.fsync(self._vectors_file.fileno())
            gen = self._gen + 1
            trained = self._index is not None
            if trained:
                _fsync_write(
                    self.path / f"index-{gen}.faiss", lambda p: faiss.write_index(self._index, str(p))
                )

            def write_state(p: Path) -> None:
                with open(p, "wb") as handle:
                    np.savez(
                        handle,
                        row_ids=self._row_ids,
                        deleted=self._deleted,
                        dim=self.dim,
                        nprobe=self.nprobe,
                        qprobe=self.qprobe,
                        trained=int(trained),
                    )

            _fsync_write(self.path / f"state-{gen}.npz", write_state)
            _fsync_write(self.path / "CURRENT", lambda p: p.write_text(f"{gen} {len(self._row_ids)}"))
            _fsync_dir(self.path)
            old, self._gen = self._gen, gen
            for stale in (self.path / f"index-{old}.faiss", self.path / f"state-{old}.npz"):
                stale.unlink(missing_ok=True)

    def close(self) -> None:
        if self._vectors_file is not None:
            self._vectors_file.close()

    # ------------------------------------------------------------------ reporting

    def index_bytes(self) -> int:
        """RAM of the index structure (not the page cache of vectors.f32)."""
        total = self._row_ids.nbytes + self._deleted.nbytes
        if self._lookup is not None:
            total += self._lookup[0].nbytes + self._lookup[1].nbytes
        if self._index is not None:
            total += ivfpq.structure_bytes(self._index, self.dim)
        return int(total)

    def status(self) -> dict:
        rows = len(self._row_ids)
        status = {
            "kind": self.kind,
            "trained": self.trained,
            "faces": len(self),
            "rows": rows,
            "deleted_rows": int(np.count_nonzero(self._deleted)),
            "index_bytes": self.index_bytes(),
            "index_bytes_per_face": self.index_bytes() / max(len(self), 1),
            "vectors_file_bytes": rows * self.dim * 4,
        }
        if self._index is not None:
            status |= ivfpq.describe(self._index)
        return status
