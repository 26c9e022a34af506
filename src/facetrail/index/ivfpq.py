"""The FAISS structure inside a trained `CompressedIndex`: IVF lists over a two-level quantizer,
holding 4-bit PQ fast-scan codes of the raw vectors (no residuals).

* The coarse quantizer is itself an IVF over the fine centroids (sqrt(nlist) top-level centroids,
  each with sqrt(nlist) children), so routing a query to its lists, and assigning millions of
  added vectors, costs a small fraction of a scan of all the fine centroids.
* Lists hold ``PQ_M`` x 4-bit codes (32 bytes per face), scanned with FAISS's SIMD fast-scan
  kernels. The codes only choose candidates: `CompressedIndex` re-ranks them exactly.
* Defaults (`default_nlist`, `default_nprobe`): coarser lists probed more widely beat finer ones
  at equal recall on face descriptors, because each probed list has a cost of its own.

Why these choices, with the figures behind them: docs/figures.md (vector index).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import faiss
import numpy as np

PQ_M = 64  # sub-quantizers of 4 bits: 32 bytes per face (32 x 4 bits capped recall@10 at 0.87)
ASSIGN_PROBES = 4  # top-level cells searched when assigning an added vector to a list
MIN_TRAIN = 1000  # the fewest vectors `build` accepts
FAST_SCAN_KERNEL = 10  # same results as FAISS's default choice for single queries, ~2/3 of the time
_ADD_CHUNK = 200_000


def default_nlist(n: int) -> int:
    """Lists for n faces: the power of two nearest min(4 sqrt(n), n / 48), 8 sqrt(n) beyond 1.5 M."""
    per_root = 4 if n <= 1_500_000 else 8  # lists per sqrt(N)
    return int(2 ** max(6, round(math.log2(min(per_root * math.sqrt(max(n, 1)), n / 48)))))


def default_nprobe(nlist: int, n: int) -> int:
    """Lists probed per query: a quarter up to 300k faces, an eighth up to 1.5 M, 1/24 beyond."""
    share = 4 if n <= 300_000 else 8 if n <= 1_500_000 else 24
    return max(32, nlist // share)


@contextmanager
def one_thread():
    """Small k-means runs are ~10x slower with 2 OpenMP threads on a busy 2-core machine."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _kmeans(x: np.ndarray, k: int, seed: int, niter: int = 12) -> np.ndarray:
    if len(x) <= k:  # too few points: take them all, pad with jittered copies
        rng = np.random.default_rng(seed)
        extra = x[rng.integers(0, len(x), k - len(x))] + rng.normal(0, 1e-3, (k - len(x), x.shape[1]))
        return np.concatenate([x, extra.astype(np.float32)])
    km = faiss.Kmeans(
        x.shape[1], k, niter=niter, seed=seed, max_points_per_centroid=256, min_points_per_centroid=1
    )
    with one_thread():
        km.train(np.ascontiguousarray(x))
    return km.centroids


def build(x: np.ndarray, nlist: int, seed: int) -> faiss.IndexIVFPQFastScan:
    """An empty structure of `nlist` lists, trained on the sample `x` (n x dim float32)."""
    dim = x.shape[1]
    top = int(2 ** round(math.log2(math.sqrt(nlist))))
    children = nlist // top
    # two-level k-means: top-level centroids, then children inside each top-level cell
    coarse = _kmeans(x[: min(len(x), 256 * top)], top, seed)
    _, owner = faiss.knn(x, coarse, 1)
    fine = np.concatenate(
        [_kmeans(x[owner[:, 0] == c], children, seed + c + 1) for c in range(top)]
    ).astype(np.float32)
    top_quantizer = faiss.IndexFlatL2(dim)
    quantizer = faiss.IndexIVFFlat(top_quantizer, dim, top)
    quantizer.quantizer.add(coarse)
    quantizer.is_trained = True
    quantizer.add_with_ids(fine, np.arange(nlist, dtype=np.int64))  # lands in its own top cell (mostly)
    quantizer.own_fields = True
    top_quantizer.this.disown()
    index = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, PQ_M, 4)
    index.by_residual = False
    index.own_fields = True
    quantizer.this.disown()
    with one_thread():  # the quantizer is trained already: this trains the PQ only
        index.train(x[: min(len(x), 100_000)])
    return index


def configure(index: faiss.IndexIVFPQFastScan, nprobe: int) -> int:
    """Probe `nprobe` lists per query; returns the top-level cells searched to find them."""
    index.nprobe = nprobe
    index.implem = FAST_SCAN_KERNEL
    quantizer = faiss.downcast_index(index.quantizer)
    children = max(1, index.nlist // quantizer.nlist)
    qprobe = min(quantizer.nlist, max(8, -(-8 * nprobe // children)))
    quantizer.nprobe = qprobe
    return qprobe


def encode(index: faiss.IndexIVFPQFastScan, vectors: np.ndarray, rows: np.ndarray) -> None:
    """Add `vectors` to their lists under their row numbers."""
    quantizer = faiss.downcast_index(index.quantizer)
    search_probe = quantizer.nprobe
    quantizer.nprobe = min(quantizer.nlist, ASSIGN_PROBES)  # nearest fine centroid in the 4 nearest top cells
    try:
        for start in range(0, len(rows), _ADD_CHUNK):
            index.add_with_ids(
                np.ascontiguousarray(vectors[start : start + _ADD_CHUNK]), rows[start : start + _ADD_CHUNK]
            )
    finally:
        quantizer.nprobe = search_probe


def structure_bytes(index: faiss.IndexIVFPQFastScan, dim: int) -> int:
    """RAM of the structure: codes (lists padded to blocks of 32), their ids, centroids, PQ tables."""
    invlists = index.invlists
    sizes = [invlists.list_size(i) for i in range(index.nlist)]
    packed = sum(-(-size // 32) * 32 for size in sizes)
    total = packed * index.code_size + sum(sizes) * 8
    total += index.nlist * dim * 4  # fine centroids (in the quantizer IVF)
    total += index.nlist * 8 + faiss.downcast_index(index.quantizer).nlist * dim * 4
    total += index.pq.M * 16 * index.pq.dsub * 4
    return int(total)


def describe(index: faiss.IndexIVFPQFastScan) -> dict:
    quantizer = faiss.downcast_index(index.quantizer)
    return {
        "nlist": int(index.nlist),
        "nprobe": int(index.nprobe),
        "top_level_cells": int(quantizer.nlist),
        "top_level_probes": int(quantizer.nprobe),
        "pq": f"{PQ_M}x4 fast-scan",
        "in_lists": int(index.ntotal),
    }
