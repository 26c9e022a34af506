"""Search benchmark: facetrail's compressed index against a brute-force numpy scan.

    .venv/bin/python bench/search.py [--sizes 1000000,10000000] [--queries 1000] [--dir /tmp/search-bench]

Data. Synthetic galleries shaped like real dlib face descriptors, calibrated on the labelled
dev photos (their embeddings are computed once and cached in --dir):
  * dlib descriptors lie in a ~85-dimensional linear subspace of R^128 around a large common
    mean (norm 1.36 of 1.48), so vectors are generated in the top-R principal subspace of the
    dev embeddings;
  * identity centres ~ N(mean, S_between), faces ~ N(centre, s_i^2 S_within), with S_within the
    pooled within-identity covariance of the dev set and S_between the (Ledoit-Wolf shrunk)
    total covariance minus S_within; s_i (per-identity spread) is log-normal;
  * faces per identity are log-normal (1 .. 500, mean ~5), like a photo collection;
  * the real dev embeddings are mixed into the gallery; queries are the held-out real dev
    faces, new photos of gallery identities, and faces of people not in the gallery.
The script prints same-person / different-person distance percentiles of the real and the
synthetic data side by side.

Figures per size, for facetrail's CompressedIndex and for the numpy scan that the
face_recognition library uses (np.linalg.norm(gallery - query, axis=1)): build time, bytes
per face in RAM, p50/p99 latency of single queries on 1 thread, queries/s on 2 threads, and
recall@10 against exact FAISS flat search on the same data.
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "dev"
DIM = 128
SUBSPACE = 90  # principal dimensions of the dev embeddings used by the generator
GEN_VERSION = 1


# --------------------------------------------------------------------------- real embeddings


def dev_embeddings(workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, identity labels) of every face in the dev photos; 'none' for unlabelled faces."""
    cache = workdir / "dev_embeddings.npz"
    if not cache.exists():
        from facetrail.config import Settings
        from facetrail.faces import load_engine
        from facetrail.images.decode import decode

        engine = load_engine(Settings())
        vectors, labels = [], []
        with (DEV / "manifest.csv").open() as handle:
            for row in csv.DictReader(handle):
                try:
                    image = decode((DEV / row["path"]).read_bytes())
                except Exception:  # noqa: BLE001, S112 - an undecodable dev file is just skipped
                    continue
                for i, face in enumerate(engine.faces(image.pixels)):
                    vectors.append(face.embedding.astype(np.float32))
                    labels.append(row["identity"] if i == 0 else "none")
        np.savez(cache, vectors=np.array(vectors), labels=np.array(labels))
    data = np.load(cache)
    return data["vectors"].astype(np.float32), data["labels"]


def _ledoit_wolf(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0)
    n, p = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / p
    d2 = np.sum((s - mu * np.eye(p)) ** 2)
    b2 = min(d2, sum(np.sum((np.outer(r, r) - s) ** 2) for r in x) / n**2)
    a = b2 / d2
    return a * mu * np.eye(p) + (1 - a) * s


class Calibration:
    """Generator parameters estimated from the labelled dev embeddings."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        v = vectors.astype(np.float64)
        self.mean = v.mean(0)
        _, _, vt = np.linalg.svd(v - self.mean, full_matrices=False)
        self.basis = vt[:SUBSPACE]  # R x 128
        keep = ~np.isin(labels, ["none", "unknown"])
        lv, ll = v[keep], labels[keep]
        names = sorted(set(ll))
        counts = np.array([(ll == n).sum() for n in names])
        centres = np.array([lv[ll == n].mean(0) for n in names])
        resid = np.concatenate([lv[ll == n] - c for n, c in zip(names, centres)])
        p_res = resid @ self.basis.T
        s_within = p_res.T @ p_res / (len(lv) - len(names))
        s_total = _ledoit_wolf((lv - self.mean) @ self.basis.T)
        s_between = s_total - s_within * (1 - 1 / counts.mean())
        w, u = np.linalg.eigh(s_between)
        self.between = u * np.sqrt(np.clip(w, 1e-6, None))  # R x R factor
        w, u = np.linalg.eigh(s_within)
        self.within = u * np.sqrt(np.clip(w, 1e-6, None))
        self.dev_vectors, self.dev_labels = vectors, labels


def synthetic(cal: Calibration, n_faces: int, seed: int, out: np.ndarray | None = None):
    """n_faces synthetic faces: (vectors float32 n x 128, identity per face int64, centres, spreads)."""
    rng = np.random.default_rng(seed)
    sizes = []
    total = 0
    while total < n_faces:
        s = np.clip(np.ceil(rng.lognormal(np.log(3.0), 0.9, 100_000)), 1, 500).astype(np.int64)
        sizes.append(s)
        total += int(s.sum())
    sizes = np.concatenate(sizes)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_faces) + 1]
    sizes[-1] -= int(sizes.sum()) - n_faces
    n_ids = len(sizes)
    centres = rng.standard_normal((n_ids, SUBSPACE), dtype=np.float32) @ cal.between.T.astype(np.float32)
    spreads = rng.lognormal(0.0, 0.15, n_ids).astype(np.float32)
    identity = np.repeat(np.arange(n_ids), sizes)
    rng.shuffle(identity)
    vectors = out if out is not None else np.empty((n_faces, DIM), np.float32)
    basis = cal.basis.astype(np.float32)
    mean = cal.mean.astype(np.float32)
    within = cal.within.T.astype(np.float32)
    chunk = 500_000
    for start in range(0, n_faces, chunk):
        who = identity[start : start + chunk]
        z = rng.standard_normal((len(who), SUBSPACE), dtype=np.float32) @ within
        z *= spreads[who, None]
        z += centres[who]
        vectors[start : start + len(who)] = z @ basis + mean
    return vectors, identity, centres, spreads


def face_from(cal: Calibration, centres, spreads, who: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((len(who), SUBSPACE), dtype=np.float32) @ cal.within.T.astype(np.float32)
    z = z * spreads[who, None] + centres[who]
    return (z @ cal.basis.astype(np.float32) + cal.mean.astype(np.float32)).astype(np.float32)


def pair_distances(vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(np.maximum(((vectors[:, None, :] - vectors[None, :, :]) ** 2).sum(-1), 0))
    same = labels[:, None] == labels[None, :]
    iu = np.triu_indices(len(vectors), 1)
    return d[iu][same[iu]], d[iu][~same[iu]]


# --------------------------------------------------------------------------- datasets


def dataset(cal: Calibration, n: int, n_queries: int, workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(gallery memmap n x 128, queries) for size n, cached on disk. Gallery row i has face id i."""
    path = workdir / f"gallery-{n}-v{GEN_VERSION}.f32"
    qpath = workdir / f"queries-{n}-{n_queries}-v{GEN_VERSION}.npy"
    if not path.exists() or not qpath.exists():
        tmp = path.with_suffix(".tmp")
        gallery = np.lib.format.open_memmap(tmp, "w+", np.float32, (n, DIM))
        _, ident, centres, spreads = synthetic(cal, n, seed=n, out=gallery)
        rng = np.random.default_rng(n + 1)
        # Real dev faces: all labelled ones but one per identity go into the gallery; the held-out
        # one of each identity with 2+ faces is a query, and so are the unlabelled faces.
        dev, labels = cal.dev_vectors, cal.dev_labels
        held = []
        for name in sorted(set(labels) - {"none", "unknown"}):
            rows = np.flatnonzero(labels == name)
            if len(rows) >= 2:
                held.append(rows[0])
        into = np.setdiff1d(np.arange(len(dev)), held)
        gallery[rng.choice(n, len(into), replace=False)] = dev[into]
        gallery.flush()
        n_real = min(len(held), n_queries // 10)
        n_new = n_queries // 5
        n_known = n_queries - n_real - n_new
        known = face_from(cal, centres, spreads, ident[rng.integers(0, n, n_known)], seed=n + 2)
        _, _, c2, s2 = synthetic(cal, n_new * 5, seed=n + 3)  # people who are not in the gallery
        new = face_from(cal, c2, s2, rng.integers(0, len(c2), n_new), seed=n + 4)
        queries = np.concatenate([dev[held[:n_real]], known, new]).astype(np.float32)
        del gallery
        os.replace(tmp, path)
        np.save(qpath, queries)
    return np.load(path, mmap_mode="r"), np.load(qpath)


def ground_truth(gallery: np.ndarray, queries: np.ndarray, k: int, workdir: Path) -> np.ndarray:
    """Exact k nearest ids by FAISS flat L2 search, cached on disk."""
    import faiss

    cache = workdir / f"truth-{len(gallery)}-{len(queries)}-{k}-v{GEN_VERSION}.npy"
    if not cache.exists():
        index = faiss.IndexFlatL2(DIM)
        for start in range(0, len(gallery), 1_000_000):
            index.add(np.ascontiguousarray(gallery[start : start + 1_000_000]))
        _, truth = index.search(queries, k)
        np.save(cache, truth)
        del index
    return np.load(cache)


# --------------------------------------------------------------------------- measurements


def rss_anon() -> int:
    """Anonymous resident memory of this process (excludes page cache of memory-mapped files)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def opened_rss(folder: Path) -> int:
    """Anonymous RSS added by opening the saved index and running a search, in a fresh process
    (in this one, freed build buffers would be reused and hide the cost)."""
    import subprocess

    code = (
        f"import sys, numpy as np; sys.path.insert(0, {str(Path(__file__).parent)!r}); from search import rss_anon; "
        "from facetrail.index.compressed import CompressedIndex; import faiss; "
        f"a = rss_anon(); i = CompressedIndex({str(folder)!r}); "
        f"i.search(np.ones((1, {DIM}), np.float32), 10); print(rss_anon() - a)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def latencies(search, queries: np.ndarray, repeats: int) -> np.ndarray:
    """Per-query latency in ms, minimum over `repeats` passes (the machine is shared)."""
    best = np.full(len(queries), np.inf)
    for _ in range(repeats):
        for i in range(len(queries)):
            t0 = time.perf_counter()
            search(queries[i : i + 1])
            best[i] = min(best[i], time.perf_counter() - t0)
    return best * 1e3


def throughput(search, queries: np.ndarray, threads: int = 2, repeats: int = 2) -> float:
    """Single-query searches per second with `threads` Python threads (best of `repeats`)."""
    best = 0.0
    for _ in range(repeats):
        parts = np.array_split(np.arange(len(queries)), threads)

        def work(rows):
            for i in rows:
                search(queries[i : i + 1])

        workers = [threading.Thread(target=work, args=(rows,)) for rows in parts]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, len(queries) / (time.perf_counter() - t0))
    return best


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(np.intersect1d(f[:k], t[:k])) / k for f, t in zip(found, truth)]))


def print_calibration(cal: Calibration) -> None:
    keep = ~np.isin(cal.dev_labels, ["none", "unknown"])
    real_same, real_diff = pair_distances(cal.dev_vectors[keep], cal.dev_labels[keep])
    rng = np.random.default_rng(7)
    _, _, centres, spreads = synthetic(cal, 200_000, seed=7)
    ids = rng.choice(len(centres), 29, replace=False)
    who = np.repeat(ids, 8)
    syn = face_from(cal, centres, spreads, who, seed=8)
    syn_same, syn_diff = pair_distances(syn, who)
    q = [5, 25, 50, 75, 95]
    print(
        f"Calibration on {keep.sum()} labelled dev faces ({len(set(cal.dev_labels[keep]))} people); "
        f"synthetic: 29 random identities x 8 faces"
    )
    print(f"  {'distance percentiles':<28}" + "".join(f"{f'p{p}':>7}" for p in q))
    for name, values in [
        ("real same person", real_same),
        ("synthetic same person", syn_same),
        ("real different people", real_diff),
        ("synthetic different people", syn_diff),
    ]:
        print(f"  {name:<28}" + "".join(f"{v:7.3f}" for v in np.percentile(values, q)))
    print(
        f"  mean norm: real {np.linalg.norm(cal.dev_vectors, axis=1).mean():.3f}, "
        f"synthetic {np.linalg.norm(syn, axis=1).mean():.3f}\n"
    )


def bench_size(cal, n, args, rows) -> None:
    import faiss

    from facetrail.index.compressed import CompressedIndex

    workdir = Path(args.dir)
    t0 = time.perf_counter()
    gallery, queries = dataset(cal, n, args.queries, workdir)
    print(f"[{n:,}] data ready in {time.perf_counter() - t0:.0f} s ({len(queries)} queries)", flush=True)
    t0 = time.perf_counter()
    truth = ground_truth(gallery, queries, 100, workdir)[:, :10]
    print(f"[{n:,}] exact FAISS flat ground truth in {time.perf_counter() - t0:.0f} s", flush=True)
    gc.collect()

    # ---- facetrail CompressedIndex
    folder = workdir / f"index-{n}"
    shutil.rmtree(folder, ignore_errors=True)
    faiss.omp_set_num_threads(2)
    t0 = time.perf_counter()
    index = CompressedIndex(folder)
    for start in range(0, n, 1_000_000):
        index.add(
            np.arange(start, min(n, start + 1_000_000), dtype=np.int64), gallery[start : start + 1_000_000]
        )
    t_add = time.perf_counter() - t0
    index.train()
    build = time.perf_counter() - t0
    index.save()
    index.close()
    del index
    gc.collect()
    anon = opened_rss(folder)
    index = CompressedIndex(folder)
    status = index.status()
    print(
        f"[{n:,}] compressed index built in {build:.0f} s (writing vectors {t_add:.0f} s): {status}",
        flush=True,
    )
    faiss.omp_set_num_threads(1)
    probes = [status["nprobe"]] + [p for p in args.nprobe if p != status["nprobe"]]
    latencies(lambda q: index.search(q, 10), queries, 1)  # warm-up, not reported: the first pass ran slower
    for nprobe in probes:
        index.set_nprobe(nprobe)
        _, found = index.search(queries, 10)
        rec = recall_at(found, truth)
        lat = latencies(lambda q: index.search(q, 10), queries, args.repeats)
        qps = throughput(lambda q: index.search(q, 10), queries)
        label = f"facetrail {status['kind']} nprobe={nprobe}" + (
            " (default)" if nprobe == status["nprobe"] else ""
        )
        rows.append(
            (
                n,
                label,
                build,
                status["index_bytes_per_face"],
                anon / n,
                status["vectors_file_bytes"] / n,
                np.percentile(lat, 50),
                np.percentile(lat, 99),
                qps,
                rec,
                len(queries),
            )
        )
        print(
            f"[{n:,}]   nprobe={nprobe}: recall@10 {rec:.4f}, p50 {np.percentile(lat, 50):.2f} ms, "
            f"p99 {np.percentile(lat, 99):.2f} ms, {qps:.0f} q/s on 2 threads",
            flush=True,
        )
    index.set_nprobe(status["nprobe"])
    index.close()
    index = None
    gc.collect()

    # ---- brute-force numpy scan (face_recognition.face_distance)
    t0 = time.perf_counter()
    array = np.empty((n, DIM), np.float32)
    for start in range(0, n, 1_000_000):
        array[start : start + 1_000_000] = gallery[start : start + 1_000_000]
    load = time.perf_counter() - t0
    block = 1_000_000  # bounds the (gallery - query) temporary to 512 MB at 10 M faces

    def face_distance_search(q: np.ndarray, k: int = 10) -> np.ndarray:
        if n <= block:
            d = np.linalg.norm(array - q, axis=1)
        else:
            d = np.concatenate([np.linalg.norm(array[s : s + block] - q, axis=1) for s in range(0, n, block)])
        top = np.argpartition(d, k)[:k]
        return top[np.argsort(d[top])]

    sub = queries[: max(2, int(args.numpy_queries * 1_000_000 / n))]
    found = np.array([face_distance_search(q[None]) for q in sub])
    rec = recall_at(found, truth[: len(sub)])
    lat = latencies(face_distance_search, sub, 2)
    qps = throughput(face_distance_search, sub, repeats=1)
    rows.append(
        (
            n,
            "numpy np.linalg.norm(gallery - query)",
            load,
            4 * DIM,
            array.nbytes / n,
            0.0,
            np.percentile(lat, 50),
            np.percentile(lat, 99),
            qps,
            rec,
            len(sub),
        )
    )
    print(
        f"[{n:,}]   numpy scan: recall@10 {rec:.4f} ({len(sub)} queries), p50 {np.percentile(lat, 50):.1f} ms",
        flush=True,
    )
    array = None
    gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000000,10000000", help="gallery sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=1000, help="queries per size")
    parser.add_argument(
        "--numpy-queries",
        type=int,
        default=50,
        help="queries timed for the numpy scan at 1 M (scaled down with size)",
    )
    parser.add_argument(
        "--nprobe", default="512,2048", help="extra nprobe values to measure besides the default"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timing passes per query (minimum kept)")
    parser.add_argument(
        "--dir", default="/tmp/search-bench", help="cache folder (data, ground truth, indexes)"
    )
    args = parser.parse_args()
    args.nprobe = [int(p) for p in args.nprobe.split(",") if p]
    workdir = Path(args.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cal = Calibration(*dev_embeddings(workdir))
    print_calibration(cal)
    rows: list[tuple] = []
    for n in (int(s) for s in args.sizes.split(",")):
        bench_size(cal, n, args, rows)
    print()
    print(
        f"{'faces':>11} {'index':<58} {'build s':>8} {'B/face idx':>10} {'RssAnon/f':>9} {'+ mmap B/f':>10} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'q/s 2thr':>8} {'recall@10':>9} {'queries':>7}"
    )
    for n, name, build, bpf, anon, mmap, p50, p99, qps, rec, nq in rows:
        print(
            f"{n:>11,} {name:<58} {build:>8.1f} {bpf:>10.1f} {anon:>9.1f} {mmap:>10.0f} "
            f"{p50:>7.2f} {p99:>7.2f} {qps:>8.1f} {rec:>9.4f} {nq:>7}"
        )
    print(
        "\nB/face idx: index structure in RAM (codes, list ids, centroids, row->id map, deleted flags);"
        " RssAnon/f: anonymous RSS per face of a fresh process that opens the saved index and searches; + mmap B/f: float32 vectors file,"
        " page cache (evictable); numpy: the gallery array itself. recall@10 against exact FAISS flat search."
        " numpy build = loading the array into RAM."
    )


if __name__ == "__main__":
    sys.exit(main())
