"""Compressed index for large galleries: IVF over a two-level quantizer, 4-bit PQ fast-scan codes,
exact re-ranking from the float32 vectors kept in a memory-mapped file.

Layout of the folder given to the constructor::

    vectors.f32          float32 rows (N x dim), append-only; row r is the r-th face ever added
    state-<gen>.npz      row -> face id (int64), deleted flags, dim, nprobe, training state
    index-<gen>.faiss    the trained FAISS structure (absent while the index is exact)
    CURRENT              text "<gen> <rows>": which generation is live (replaced atomically)

save() writes a new generation, fsyncs it, then atomically replaces CURRENT; a crash leaves the
old or the new generation. Rows appended to vectors.f32 after the last save are ignored on open
(the caller re-adds them, e.g. `facetrail.index.sync`).

How a search works

* While untrained (small galleries, below `EXACT_LIMIT` = 100k faces by default), search is an
  exact scan of the float vectors (~2 ms per query at 100k, like `FaissIndex`). `add` trains the
  compressed structure automatically once the gallery reaches the limit; `train()` does it on
  demand. Training uses the vectors held at that time; later adds are encoded with it.
* Trained: the query is routed to `nprobe` of `nlist` inverted lists. The coarse quantizer is
  itself an IVF over the fine centroids (sqrt(nlist) top-level centroids, each with
  sqrt(nlist) children: "IVF65536(IVF256,Flat)"), so choosing 1024-4096 lists of 65536 costs
  ~0.1-0.3 ms instead of a 65536-centroid scan or a deep HNSW walk, and adding 10 M vectors
  needs no 10 M x 65536 distance matrix. Lists hold 64 x 4-bit PQ codes of the raw vectors
  (32 bytes, FAISS fast-scan SIMD kernels, one lookup table per query). The best
  k' = max(256, 10 k) candidates by PQ distance are re-ranked with exact distances read from
  vectors.f32, so returned distances are exact Euclidean ones and the PQ error only matters
  if a true neighbour falls outside the top k'.
* Deleted rows are flagged in RAM (1 byte/row) and filtered from the candidates, so removals
  take effect immediately; their codes stay in the lists until `compact()` (called by save()
  when over 20 % of rows are deleted) re-encodes the live rows.

Why this structure (measured on synthetic galleries calibrated on dlib descriptors of the dev
photos, see bench/search.py; 2-core VM, 1 thread per query)

* Real dlib descriptors are hard for partition-based search: different people are only ~0.85
  apart, the nearest other person ~0.5-0.6, same person ~0.49, and the vectors fill an
  ~85-dimensional subspace. The true top 10 of a query is spread over many cells: at 1 M faces
  with 4096 lists, probing 128 lists (3 % of the data) reaches only 95 % of the true top 10;
  with 16384 lists, 512 probes (also 3 %) reach 99 %. At an equal share probed, finer lists
  recall more; but each probed list has a cost, and at 1 M probing 1/8 of 4096 lists reaches
  0.994 faster than 1/16 of 16384 reaches 0.991 (figures below). PQ error is secondary (re-ranking 200 candidates recovers it: recall equals
  the probed-cell ceiling within 0.003).
* 4-bit fast-scan PQ scans a list of codes at a few ns per code; with fine lists the cost is
  per list (~1 us), so nprobe, not code size, drives latency. 64 x 4 bits (32 B) was needed:
  32 x 4 bits capped recall@10 at 0.87 even with k' = 400 re-ranked candidates.
* HNSW over the faces costs > 100 B/face of links and reached only 0.74-0.88 recall@10 on such
  data; HNSW as coarse quantizer needs efSearch >= nprobe (a 1024-wide walk is ~2 ms, and
  capped nprobe silently at efSearch=16 by default). The two-level IVF quantizer is cheaper.
* Defaults: nlist = power of two nearest min(4 sqrt(N), N / 48) up to 1.5 M faces (4096 at 1 M),
  min(8 sqrt(N), N / 48) beyond (32768 at 10 M); nprobe = nlist / 4 up to 300k faces, nlist / 8
  up to 1.5 M, nlist / 24 beyond (512 at 1 M, 1365 at 10 M). Coarser lists probed more widely
  beat finer ones at equal recall (each probed list has a cost): 4096 lists beat 16384 at 1 M,
  32768 beat 65536 at 10 M. FAISS's fast-scan kernel 10 is chosen (`implem`): same results,
  ~2/3 of the default choice's time for single queries.

Measured (bench/search.py, 1000 queries, shared 2-core VM, minimum of 3 timings per query):

    faces  nlist  nprobe  recall@10  p50 ms     p99 ms     q/s (2 threads)  build  index RAM/face
    1 M    4096    384     0.990      1.25-1.86  1.51-2.14  1100-1340        17 s   53 B (62 B RSS)
    1 M    4096    512     0.994      1.56-1.89  1.78-2.50  940-1020
    1 M   16384   1024     0.991      3.26       4.28       (implem 12/13, same day: the old default)
    10 M  32768   1024     0.978      6.32       7.72       256             195 s   53 B (60 B RSS)
    10 M  32768   1365     0.984      8.92      10.6        203
    10 M  32768   1536     0.986      7.28       9.13       224
    10 M  65536   1024     0.955      5.44       6.78       288             362 s   56 B (66 B RSS)
    10 M  65536   2048     0.984      9.27      11.3        195
    10 M  65536   2048     0.982      6.26       6.90       301             (earlier machine, implem 12/13)
    numpy np.linalg.norm(gallery - query): 338-380 ms/query at 1 M, 3.4-3.9 s at 10 M, 512 B/face.
    The machine of these runs does this kernel about 2x slower than an earlier one: the old 1 M
    default took 4.28 ms here against 2.09 ms there; the numpy scan took 255 ms at 1 M there.

Recall at 10 M (65536 lists) levels off near 0.987, probably because vectors are assigned to lists by
searching only the `ASSIGN_PROBES` = 4 nearest top-level cells (to keep 10 M adds at ~8 min),
so some land in a list that a query does not probe (at 1 M the same setting cost ~0.003
recall). Raising it should raise the ceiling, at the cost of slower adds (not measured at 10 M).
"""

from __future__ import annotations

import math
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

EXACT_LIMIT = 100_000  # below this many faces, exact scan; at it, add() trains automatically
PQ_M = 64  # sub-quantizers of 4 bits: 32 bytes per face
ASSIGN_PROBES = 4  # top-level cells searched when assigning an added vector to a list
MIN_KPRIME = 256  # candidates re-ranked exactly (at least 10 k)
COMPACT_SHARE = 0.2  # save() re-encodes the lists when this share of rows is deleted
_CHUNK = 500_000


def default_nlist(n: int) -> int:
    per_root = 4 if n <= 1_500_000 else 8  # lists per sqrt(N)
    return int(2 ** max(6, round(math.log2(min(per_root * math.sqrt(max(n, 1)), n / 48)))))


def default_nprobe(nlist: int, n: int) -> int:
    share = 4 if n <= 300_000 else 8 if n <= 1_500_000 else 24
    return max(32, nlist // share)


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


def _kmeans(x: np.ndarray, k: int, seed: int, niter: int = 12) -> np.ndarray:
    if len(x) <= k:  # too few points: take them all, pad with jittered copies
        rng = np.random.default_rng(seed)
        extra = x[rng.integers(0, len(x), k - len(x))] + rng.normal(0, 1e-3, (k - len(x), x.shape[1]))
        return np.concatenate([x, extra.astype(np.float32)])
    km = faiss.Kmeans(
        x.shape[1], k, niter=niter, seed=seed, max_points_per_centroid=256, min_points_per_centroid=1
    )
    with _one_thread():
        km.train(np.ascontiguousarray(x))
    return km.centroids


@contextmanager
def _one_thread():
    """Small k-means runs are ~10x slower with 2 OpenMP threads on a busy 2-core machine."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class CompressedIndex:
    """VectorIndex over a folder: exact scan while small, IVF-PQ fast-scan with exact re-ranking beyond."""

    def __init__(self, path: Path, dim: int = 128, exact_limit: int = EXACT_LIMIT) -> None:
        self.path = Path(path)
        self.dim = dim
        self.exact_limit = exact_limit
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._gen = 0
        self._row_ids = np.empty(0, np.int64)
        self._deleted = np.empty(0, np.bool_)
        self._index = None  # faiss IndexIVFPQFastScan once trained
        self.nprobe = 0
        self.qprobe = 0
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None  # (sorted live ids, rows)
        current = self.path / "CURRENT"
        rows = 0
        if current.exists():
            gen, rows = (int(v) for v in current.read_text().split())
            state = np.load(self.path / f"state-{gen}.npz")
            if int(state["dim"]) != dim:
                raise ValueError(f"{self.path} holds {int(state['dim'])}-d vectors, expected {dim}")
            self._gen = gen
            self._row_ids = state["row_ids"]
            self._deleted = state["deleted"].copy()
            self.nprobe, self.qprobe = int(state["nprobe"]), int(state["qprobe"])
            if int(state["trained"]):
                self._index = faiss.read_index(str(self.path / f"index-{gen}.faiss"))
                self._configure()
        vectors = self.path / "vectors.f32"
        with open(vectors, "ab") as handle:  # drop rows appended after the last save
            handle.truncate(rows * dim * 4)
        self._vectors_file = open(vectors, "ab")  # noqa: SIM115 - kept open for appends, see close()
        self._map()

    # ------------------------------------------------------------------ bookkeeping

    def _map(self) -> None:
        rows = len(self._row_ids)
        self._vectors = (
            np.memmap(self.path / "vectors.f32", np.float32, "r", shape=(rows, self.dim))
            if rows
            else np.empty((0, self.dim), np.float32)
        )

    @property
    def kind(self) -> str:
        return (
            f"faiss-ivf{self._index.nlist}-pq{PQ_M}x4fs-rerank"
            if self._index is not None
            else "faiss-ivf-untrained-exact"
        )

    @property
    def trained(self) -> bool:
        return self._index is not None

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
            first = len(self._row_ids)
            for start in range(0, len(ids), _CHUNK):
                self._vectors_file.write(vectors[start : start + _CHUNK].tobytes())
            self._vectors_file.flush()
            self._row_ids = np.concatenate([self._row_ids, ids])
            self._deleted = np.concatenate([self._deleted, np.zeros(len(ids), np.bool_)])
            self._lookup = None
            self._map()
            if self._index is not None:
                self._encode(vectors, np.arange(first, first + len(ids), dtype=np.int64))
            elif len(self) >= self.exact_limit:
                self.train()

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
        """(Re)build the compressed structure from the live vectors held now."""
        with self._lock:
            live = np.flatnonzero(~self._deleted)
            if len(live) < 1000:
                raise ValueError("need at least 1000 vectors to train")
            nlist = nlist or default_nlist(len(live))
            top = int(2 ** round(math.log2(math.sqrt(nlist))))
            children = nlist // top
            rng = np.random.default_rng(seed)
            pick = np.sort(rng.choice(live, min(sample, len(live)), replace=False))
            x = np.ascontiguousarray(self._vectors[pick])
            # two-level k-means: top-level centroids, then children inside each top-level cell
            coarse = _kmeans(x[: min(len(x), 256 * top)], top, seed)
            _, owner = faiss.knn(x, coarse, 1)
            fine = np.concatenate(
                [_kmeans(x[owner[:, 0] == c], children, seed + c + 1) for c in range(top)]
            ).astype(np.float32)
            top_quantizer = faiss.IndexFlatL2(self.dim)
            quantizer = faiss.IndexIVFFlat(top_quantizer, self.dim, top)
            quantizer.quantizer.add(coarse)
            quantizer.is_trained = True
            quantizer.add_with_ids(
                fine, np.arange(nlist, dtype=np.int64)
            )  # lands in its own top cell (mostly)
            quantizer.own_fields = True
            top_quantizer.this.disown()
            index = faiss.IndexIVFPQFastScan(quantizer, self.dim, nlist, PQ_M, 4)
            index.by_residual = False
            index.own_fields = True
            quantizer.this.disown()
            with _one_thread():  # the quantizer is trained already: this trains the PQ only
                index.train(x[: min(len(x), 100_000)])
            self._index = index
            self.nprobe = nprobe or default_nprobe(nlist, len(live))
            self._configure()
            self._encode_all()

    def _configure(self) -> None:
        index = self._index
        index.nprobe = self.nprobe
        # FAISS's fast-scan kernel 10 (one query at a time, heap of candidates): the same results as
        # the default choice (12/13 for single queries) in ~2/3 of the time (bench/search.py).
        index.implem = 10
        quantizer = faiss.downcast_index(index.quantizer)
        top = quantizer.nlist
        children = max(1, index.nlist // top)
        self.qprobe = min(top, max(8, -(-8 * self.nprobe // children)))
        quantizer.nprobe = self.qprobe

    def set_nprobe(self, nprobe: int) -> None:
        """Lists probed per query (more: higher recall, slower)."""
        self.nprobe = int(nprobe)
        if self._index is not None:
            self._configure()

    def _encode(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        quantizer = faiss.downcast_index(self._index.quantizer)
        search_probe = quantizer.nprobe
        quantizer.nprobe = min(
            quantizer.nlist, ASSIGN_PROBES
        )  # nearest fine centroid in the 4 nearest top cells
        try:
            for start in range(0, len(rows), 200_000):
                self._index.add_with_ids(
                    np.ascontiguousarray(vectors[start : start + 200_000]), rows[start : start + 200_000]
                )
        finally:
            quantizer.nprobe = search_probe

    def _encode_all(self) -> None:
        self._index.reset()
        live = np.flatnonzero(~self._deleted)
        for start in range(0, len(live), _CHUNK):
            rows = live[start : start + _CHUNK]
            self._encode(np.ascontiguousarray(self._vectors[rows]), rows)

    def compact(self) -> None:
        """Drop deleted rows' codes from the lists (the float file keeps them; rows stay stable)."""
        with self._lock:
            if self._index is not None:
                self._encode_all()

    # ------------------------------------------------------------------ persistence

    def save(self) -> None:
        with self._lock:
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
        self._vectors_file.close()

    # ------------------------------------------------------------------ reporting

    def index_bytes(self) -> int:
        """RAM of the index structure (not the page cache of vectors.f32)."""
        total = self._row_ids.nbytes + self._deleted.nbytes
        if self._lookup is not None:
            total += self._lookup[0].nbytes + self._lookup[1].nbytes
        if self._index is not None:
            index = self._index
            invlists = index.invlists
            codes = sum(invlists.list_size(i) for i in range(index.nlist))
            packed = 0
            for i in range(index.nlist):  # fast-scan lists are padded to blocks of 32 codes
                packed += -(-invlists.list_size(i) // 32) * 32
            total += packed * index.code_size + codes * 8
            total += index.nlist * self.dim * 4 * 1  # fine centroids (in the quantizer IVF)
            total += index.nlist * 8 + faiss.downcast_index(index.quantizer).nlist * self.dim * 4
            total += index.pq.M * 16 * index.pq.dsub * 4
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
            "exact_limit": self.exact_limit,
        }
        if self._index is not None:
            status |= {
                "nlist": int(self._index.nlist),
                "nprobe": int(self.nprobe),
                "top_level_cells": int(faiss.downcast_index(self._index.quantizer).nlist),
                "top_level_probes": int(faiss.downcast_index(self._index.quantizer).nprobe),
                "pq": f"{PQ_M}x4 fast-scan",
                "in_lists": int(self._index.ntotal),
            }
        return status
