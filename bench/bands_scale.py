"""Do the FPIR bands hold at scale? Absent-person searches in synthetic galleries of 1 k to 10 M faces
(issue 16, item 3).

    .venv/bin/python bench/bands_scale.py [--sizes 1000,10000,100000,1000000,10000000] [--queries 10000]
                                          [--fewer 10000000:10000] [--reuse]

(figures.md "Bands at scale": --queries 20000 --fewer 10000000:10000; the 10 M search took 28 min.)

search/bands.py puts band edges where FPIR(d, N) = 1 - (1 - F(d))^N, the share of searches for
someone absent from a gallery of N faces that still return a face closer than d, equals 1e-3
("very strong"), 1e-2 ("strong"), 1e-1 ("possible") and 1/2 (the default threshold); F is the
different-person distance CDF, its lower tail a generalised Pareto fit on the dev set's 26,663
different-person pairs (bench/bands.py). At 1 M faces those edges lie far beyond any measured pair,
and no real gallery of that size is at hand. So the check is made where truth can be measured:
on bench/search.py's generator of synthetic dlib-like descriptors (imported, not copied).

  * galleries of N synthetic faces (identities with log-normal photo counts, as bench/search.py
    makes them; generated and searched in chunks, exact FAISS flat L2 search, k = 1);
  * absent-person queries: one face each of new synthetic identities, none in any gallery; for
    each, the nearest gallery distance. Empirical FPIR(d, N) = share of queries nearer than d,
    with an exact (Clopper-Pearson) binomial 95 % interval;
  * (a) the method: the tail fitted, with bench/bands.py's own `fit`, on a synthetic sample shaped
    like the dev set (29 new identities with the dev set's photo counts: the same 26,663
    different-person pairs), its bootstrap interval as bench/bands.py computes it (by pair), the
    spread over independent dev-sized samples (replicates) and how often each replicate's
    interval, drawn by pair or by person, holds the true distance; and fits on 2 M independent
    pairs below their 2 % and 0.1 % quantiles (F well known: what is left is the tail model's
    threshold and the formula's own assumption that the N distances of one search are
    independent);
  * (b) the shipped dlib calibration: the distances `bands_at(N, "dlib_resnet_v1")` and
    `threshold_at` give, searched in the same synthetic galleries. Synthetic different-person
    distances are not real ones: the quantiles of both are printed side by side first, and the
    real dev set's fit with its interval by pair and by person.

Prints the tables (markdown), wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

import bands as fitting  # bench/bands.py: the tail fit and the dev descriptors
import search as generator  # bench/search.py: the synthetic descriptor generator
from facetrail.faces.registry import model_info
from facetrail.faces.tail import Tail, distance_at_pair_rate
from facetrail.search import metrics
from facetrail.search.bands import FPIR_BANDS, THRESHOLD_FPIR, bands_at, distance_at, threshold_at

MODEL = "dlib_resnet_v1"
TARGETS = (*FPIR_BANDS, ("threshold", THRESHOLD_FPIR))
PAIR_QUANTILES = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
BIG_PAIRS = 2_000_000
LOWER_RATES = (0.02, 0.001)  # tail thresholds tried on the 2 M pairs (bench/bands.py: 0.02)


# --------------------------------------------------------------------------- synthetic data


def new_identities(cal, count: int, seed: int):
    """Centres and spreads of `count` synthetic identities (bench/search.py's generator)."""
    centres, spreads = np.empty((0, generator.SUBSPACE), np.float32), np.empty(0, np.float32)
    while len(centres) < count:
        _, _, c, s = generator.synthetic(cal, count * 6, seed=seed)  # ~5 faces per identity
        centres, spreads = np.concatenate([centres, c]), np.concatenate([spreads, s])
        seed += 1
    return centres[:count], spreads[:count]


def absent_queries(cal, count: int, seed: int) -> np.ndarray:
    """One face each of `count` new identities: people who are in no gallery."""
    centres, spreads = new_identities(cal, count, seed)
    return generator.face_from(cal, centres, spreads, np.arange(count), seed=seed + 1)


def dev_shaped_faces(cal, counts: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic sample shaped like the dev set: len(counts) new identities, counts[i] faces of
    the i-th; (faces, identity of each)."""
    centres, spreads = new_identities(cal, len(counts), seed)
    who = np.repeat(np.arange(len(counts)), counts)
    return generator.face_from(cal, centres, spreads, who, seed=seed + 1), who


def impostors(faces: np.ndarray, who: np.ndarray) -> np.ndarray:
    """Distances of every pair of faces of two different identities."""
    return metrics.pair_distances(faces, who, np.ones(len(who), bool))[1]


def dev_shaped_impostors(cal, counts: np.ndarray, seed: int) -> np.ndarray:
    return impostors(*dev_shaped_faces(cal, counts, seed))


def by_identity(faces: np.ndarray, who: np.ndarray, rng) -> np.ndarray:
    """One bootstrap sample resampled by person, not by pair: the identities drawn with
    replacement, every different-person pair among their faces (a person drawn twice is still one
    person: pairs between the copies are left out)."""
    drawn = rng.choice(np.unique(who), len(np.unique(who)))
    rows = np.concatenate([np.flatnonzero(who == i) for i in drawn])
    return impostors(faces[rows], who[rows])


def independent_impostors(cal, count: int, seed: int) -> np.ndarray:
    """`count` different-person distances, each between faces of two random identities."""
    centres, spreads = new_identities(cal, 100_000, seed)
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(centres), (2, count))
    keep = a != b
    first = generator.face_from(cal, centres, spreads, a[keep], seed=seed + 1)
    second = generator.face_from(cal, centres, spreads, b[keep], seed=seed + 2)
    return np.linalg.norm(first - second, axis=1)


def gallery_seed(size: int) -> int:
    """The generator seed of a gallery: 10,000 for 1 k faces, 20,000 for 10 k ... 50,000 for 10 M."""
    return 10_000 * max(1, round(math.log10(size)) - 2)


def nearest(cal, size: int, queries: np.ndarray, chunk: int, seed: int) -> np.ndarray:
    """Distance from each query to its nearest face in a fresh synthetic gallery of `size` faces,
    generated and searched `chunk` faces at a time (each chunk its own identities)."""
    import faiss

    best = np.full(len(queries), np.inf, np.float32)
    for part, start in enumerate(range(0, size, chunk)):
        vectors = generator.synthetic(cal, min(chunk, size - start), seed=seed + part)[0]
        index = faiss.IndexFlatL2(generator.DIM)
        index.add(vectors)
        squared, _ = index.search(queries, 1)
        np.minimum(best, squared[:, 0], out=best)
        del index, vectors
        print(f"    {start + chunk:,} of {size:,} faces searched", file=sys.stderr, flush=True)
    return np.sqrt(np.maximum(best, 0))


# --------------------------------------------------------------------------- figures


def rate(near: np.ndarray, distance: float) -> tuple[float, float, float]:
    """Empirical FPIR at `distance` with its exact binomial 95 % interval."""
    hits, n = int((near < distance).sum()), len(near)
    low = stats.beta.ppf(0.025, hits, n - hits + 1) if hits else 0.0
    high = stats.beta.ppf(0.975, hits + 1, n - hits) if hits < n else 1.0
    return hits / n, float(low), float(high)


def fmt(value: float) -> str:
    return "0" if value == 0 else f"{value:.2g}"


def fmt_rate(near: np.ndarray, distance: float) -> str:
    value, low, high = rate(near, distance)
    return f"{fmt(value)} ({fmt(low)}–{fmt(high)})"


def tail_text(tail: Tail) -> str:
    return f"u={tail.u}, shape={tail.shape}, scale={tail.scale}, pairs={tail.pairs:,}"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# --------------------------------------------------------------------------- report


def print_distributions(real: np.ndarray, shipped: Tail, synthetic_big: np.ndarray, dev_like: list) -> None:
    print("\nDifferent-person distances: real dev pairs against the generator's "
          "(distance at each pair rate F)\n")
    print("| F | real dev pairs (26,663) | shipped dlib tail | synthetic, 2 M independent pairs "
          "| synthetic dev-shaped samples: the one fitted (5–95 % of replicates) |")
    print("| --- | --- | --- | --- | --- |")
    for q in PAIR_QUANTILES:
        real_q = f"{np.quantile(real, q):.3f}" if q * len(real) >= 1 else "–"
        if q * len(dev_like[0]) >= 1:
            low, high = np.percentile([np.quantile(d, q) for d in dev_like[1:]], [5, 95])
            dev_q = f"{np.quantile(dev_like[0], q):.3f} ({low:.3f}–{high:.3f})"
        else:
            dev_q = "–"
        print(f"| {q:g} | {real_q} | {distance_at_pair_rate(q, shipped):.3f} "
              f"| {np.quantile(synthetic_big, q):.3f} | {dev_q} |")
    print(f"| mean (std) | {real.mean():.3f} ({real.std():.3f}) | "
          f"| {synthetic_big.mean():.3f} ({synthetic_big.std():.3f}) "
          f"| {dev_like[0].mean():.3f} ({dev_like[0].std():.3f}) |")


def print_real_intervals(real: np.ndarray, faces: np.ndarray, who: np.ndarray, sizes, rounds: int) -> None:
    """The real dev set's tail (as bench/bands.py fits it) with its bootstrap interval by pair (as
    bench/bands.py computes it) and by person."""
    tail = fitting.fit(real)
    by_pair, by_person = np.random.default_rng(0), np.random.default_rng(1)
    pairs = [fitting.fit(by_pair.choice(real, len(real))) for _ in range(rounds)]
    people = [fitting.fit(by_identity(faces, who, by_person)) for _ in range(rounds)]
    print(f"\nReal dev set ({MODEL}): distance at each target, 95 % bootstrap by pair / by person\n")
    print("| faces N | band | target FPIR | fitted distance | by pair | by person |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        for name, target in TARGETS:
            cells = [np.percentile([distance_at(target, size, b) for b in kind], [2.5, 97.5])
                     for kind in (pairs, people)]
            print(f"| {size:,} | {name} | {target:g} | {distance_at(target, size, tail):.3f} "
                  + " ".join(f"| {low:.3f}–{high:.3f}" for low, high in cells) + " |")


def print_method(sizes, near, fit: Tail, boots, replicates, replicate_boots: tuple, big: Tail) -> None:
    """replicate_boots: each replicate's bootstrap fits, resampled by pair and by person."""
    print("\n(a) The method: the tail fitted on a dev-shaped synthetic sample, checked by absent-person "
          "searches\n")
    print("| faces N | band | target FPIR | true distance | fitted distance (bootstrap 95 %) "
          "| empirical FPIR (95 % CI) | FPIR at bootstrap high / low distance "
          "| replicates: FPIR median (5–95 %) | replicates' bootstrap intervals holding the true distance: "
          "by pair, by person "
          "| 2 M-pair fit: distance, FPIR |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for size in sizes:
        q = near[size]
        for name, target in TARGETS:
            d = distance_at(target, size, fit)
            low, high = np.percentile([distance_at(target, size, b) for b in boots], [2.5, 97.5])
            reps = np.array([rate(q, distance_at(target, size, r))[0] for r in replicates])
            r50, r05, r95 = np.percentile(reps, [50, 5, 95])
            d_big = distance_at(target, size, big)
            true = float(np.quantile(q, target))
            held = [np.mean([_holds(rb, target, size, true) for rb in kind]) for kind in replicate_boots]
            held_text = f"{held[0]:.0%}, {held[1]:.0%}" if target * len(q) >= 1 else "–"
            true_text = f"{true:.3f}" if target * len(q) >= 1 else "–"
            print(f"| {size:,} | {name} | {target:g} | {true_text} | {d:.3f} ({low:.3f}–{high:.3f}) "
                  f"| {fmt_rate(q, d)} | {fmt(rate(q, high)[0])} / {fmt(rate(q, low)[0])} "
                  f"| {fmt(r50)} ({fmt(r05)}–{fmt(r95)}) | {held_text} "
                  f"| {d_big:.3f}, {fmt_rate(q, d_big)} |")


def _holds(boots, target: float, size: int, true: float) -> bool:
    """Whether a fit's bootstrap 95 % interval of the distance at `target` holds the true distance."""
    low, high = np.percentile([distance_at(target, size, b) for b in boots], [2.5, 97.5])
    return bool(low <= true <= high)


def print_lower_thresholds(sizes, near, synthetic_big: np.ndarray) -> None:
    """The 2 M-pair fit with bench/bands.py's tail threshold (the 2 % quantile) and lower ones."""
    print("\nThe 2 M-pair synthetic fit by its tail threshold: distance, empirical FPIR per band\n")
    print("| tail threshold (quantile) | shape | faces N | " + " | ".join(n for n, _ in TARGETS) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in TARGETS) + " |")
    for tail_rate in LOWER_RATES:
        kept, fitting.TAIL_RATE = fitting.TAIL_RATE, tail_rate  # the same fit, below another quantile
        try:
            tail = fitting.fit(synthetic_big)
        finally:
            fitting.TAIL_RATE = kept
        for size in sizes:
            edges = [distance_at(target, size, tail) for _, target in TARGETS]
            cells = [f"{d:.3f}: {fmt(rate(near[size], d)[0])}" for d in edges]
            print(f"| {tail_rate:g} | {tail.shape} | {size:,} | " + " | ".join(cells) + " |")


def print_shipped(sizes, near) -> None:
    match = model_info(MODEL).calibration.match_threshold
    print(f"\n(b) The shipped {MODEL} calibration in the synthetic galleries\n")
    print("| faces N | band | target FPIR | shipped distance | empirical FPIR (95 % CI) |")
    print("| --- | --- | --- | --- | --- |")
    for size in sizes:
        edges = {b.name: b.max_distance for b in bands_at(size, MODEL)}
        edges["threshold"] = threshold_at(size, MODEL, match)
        for name, target in TARGETS:
            print(f"| {size:,} | {name} | {target:g} | {edges[name]:.3f} "
                  f"| {fmt_rate(near[size], edges[name])} |")


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000,10000000",
                        help="gallery sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=10_000,
                        help="absent-person queries (the same for every size)")
    parser.add_argument("--chunk", type=int, default=1_000_000,
                        help="gallery faces generated and searched at a time")
    parser.add_argument("--rounds", type=int, default=200, help="bootstrap rounds of the dev-shaped fit")
    parser.add_argument("--replicates", type=int, default=50, help="independent dev-shaped samples fitted")
    parser.add_argument("--replicate-rounds", type=int, default=100,
                        help="bootstrap rounds of each replicate")
    parser.add_argument("--fewer", default="",
                        help="SIZE:COUNT,...: search only the first COUNT queries at that size (time)")
    parser.add_argument("--threads", type=int, default=2, help="FAISS threads")
    parser.add_argument("--dir", default="/tmp/bands-scale",
                        help="cache folder: dev embeddings, each size's nearest distances")
    parser.add_argument("--reuse", action="store_true",
                        help="read the nearest distances a previous run kept in --dir instead of searching")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    fewer = dict(tuple(int(x) for x in item.split(":")) for item in args.fewer.split(",") if item)
    started = time.perf_counter()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    workdir = Path(args.dir)
    workdir.mkdir(parents=True, exist_ok=True)
    cal = generator.Calibration(*generator.dev_embeddings(workdir))

    queries = absent_queries(cal, args.queries, seed=5_000)
    print(f"\n{len(queries):,} absent-person queries (one face each of new identities)", flush=True)
    near = {}
    for size in sizes:
        t0 = time.perf_counter()
        asked = queries[: fewer.get(size, len(queries))]
        kept = workdir / f"nearest-{size}-{len(asked)}.npy"
        if args.reuse and kept.exists():
            near[size] = np.load(kept)
        else:
            near[size] = nearest(cal, size, asked, args.chunk, seed=gallery_seed(size))
            np.save(kept, near[size])
        print(f"  N = {size:>10,}, {len(asked):,} queries: nearest distance "
              f"p0.1 {np.quantile(near[size], 1e-3):.3f}, p1 {np.quantile(near[size], 1e-2):.3f}, "
              f"p50 {np.median(near[size]):.3f}; "
              f"{time.perf_counter() - t0:.0f} s, peak RSS {peak_rss_gb():.1f} GB", flush=True)

    vectors, identities, usable = fitting.descriptors(MODEL)
    real = metrics.pair_distances(vectors, identities, usable)[1]
    counts = np.unique(identities[usable], return_counts=True)[1]
    dev_like = dev_shaped_impostors(cal, counts, seed=1_000)
    fit = fitting.fit(dev_like)
    rng = np.random.default_rng(0)
    boots = [fitting.fit(rng.choice(dev_like, len(dev_like))) for _ in range(args.rounds)]
    shaped = [dev_shaped_faces(cal, counts, seed=2_000 + 10 * r) for r in range(args.replicates)]
    samples = [impostors(*s) for s in shaped]
    replicates = [fitting.fit(sample) for sample in samples]
    replicate_boots = [[fitting.fit(rng.choice(x, len(x))) for _ in range(args.replicate_rounds)]
                       for x in samples]
    by_person = np.random.default_rng(1)
    person_boots = [[fitting.fit(by_identity(*s, by_person)) for _ in range(args.replicate_rounds)]
                    for s in shaped]
    synthetic_big = independent_impostors(cal, BIG_PAIRS, seed=3_000)
    big = fitting.fit(synthetic_big)
    print(f"dev set: {len(real):,} different-person pairs of {len(counts)} people; shipped tail: "
          f"{tail_text(model_info(MODEL).calibration.tail)}")
    print(f"dev-shaped synthetic fit: {tail_text(fit)}; {args.replicates} replicates' shape "
          f"{min(r.shape for r in replicates)} to {max(r.shape for r in replicates)}")
    print(f"2 M-pair synthetic fit: {tail_text(big)}")
    print_distributions(real, model_info(MODEL).calibration.tail, synthetic_big, [dev_like, *samples])
    print_lower_thresholds(sizes, near, synthetic_big)
    del synthetic_big, samples
    print_real_intervals(real, vectors[usable], identities[usable], sizes, args.rounds)

    print_method(sizes, near, fit, boots, replicates, (replicate_boots, person_boots), big)
    print_shipped(sizes, near)
    print(f"\ntrue distance: the quantile of the absent queries' nearest distances at the target. "
          f"Wall time {time.perf_counter() - started:.0f} s, peak RSS {peak_rss_gb():.1f} GB, "
          f"{args.threads} FAISS threads.")


if __name__ == "__main__":
    sys.exit(main())
