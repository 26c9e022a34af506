"""Calibrate each face model's bands on the labelled dev photos: the distance distribution of
different-person pairs (impostors), its lower tail fitted with a generalised Pareto
distribution (extreme-value theory: the excesses below a low threshold), so that a band can be
defined by the false-positive identification rate (FPIR) at any gallery size N:
FPIR(d, N) = 1 - (1 - F(d))^N, F the impostor distance CDF.

    .venv/bin/python bench/bands.py [MODEL ...]      (default: dlib_resnet_v1 and sface_2021dec)

Reads the descriptors bench/models.py saved (/tmp/facetrail-bench-models-MODEL.npz), or
computes them. Prints, per model: the tail parameters to put in faces/registry.py
(`Tail`), the fit's bootstrap interval, the distance at FPIR 1e-3 / 1e-2 / 1e-1 for galleries
of 1 k, 1 M and 10 M faces, how same-person and different-person pairs fall in the
calibrated bands, and a check of the fit against the empirical tail.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import stats

from facetrail.faces.registry import Tail, model_info
from facetrail.search import metrics
from facetrail.search.bands import distance_at, fpir

TAIL_RATE = 0.02  # the excesses below the 2 % quantile of impostor distances are fitted
ROUNDS = 200
SIZES = (1_000, 1_000_000, 10_000_000)


def descriptors(name: str):
    cache = Path(f"/tmp/facetrail-bench-models-{name}.npz")
    if not cache.exists():
        import models  # bench/models.py

        photos = models.read_manifest(models.DEV)
        vectors, usable, *_ = models.run(name, photos)
        np.savez(cache, vectors=vectors, usable=usable, identities=np.array([p.identity for p in photos]))
    data = np.load(cache)
    return data["vectors"], data["identities"], data["usable"]


def fit(impostor: np.ndarray) -> Tail:
    u = float(np.quantile(impostor, TAIL_RATE))
    excess = u - impostor[impostor < u]
    shape, _, scale = stats.genpareto.fit(excess, floc=0.0)
    return Tail(u=round(u, 4), rate=TAIL_RATE, shape=round(float(shape), 4), scale=round(float(scale), 5),
                mean=round(float(impostor.mean()), 4), std=round(float(impostor.std()), 4), pairs=len(impostor))


def main() -> None:
    rng = np.random.default_rng(0)
    for name in sys.argv[1:] or ["dlib_resnet_v1", "sface_2021dec"]:
        vectors, identities, usable = descriptors(name)
        genuine, impostor = metrics.pair_distances(vectors, identities, usable)
        tail = fit(impostor)
        print(f"\n{name}: {len(impostor)} impostor pairs; Tail(u={tail.u}, rate={tail.rate}, shape={tail.shape}, "
              f"scale={tail.scale}, mean={tail.mean}, std={tail.std}, pairs={tail.pairs})")
        boots = [fit(rng.choice(impostor, len(impostor))) for _ in range(ROUNDS)]
        for size in SIZES:
            cells = []
            for rate in (1e-3, 1e-2, 1e-1):
                low, high = np.percentile([distance_at(rate, size, b) for b in boots], [2.5, 97.5])
                cells.append(f"FPIR {rate:g}: {distance_at(rate, size, tail):.3f} ({low:.3f}-{high:.3f})")
            print(f"  N = {size:>10,}: " + "; ".join(cells))
        # the fit against the empirical tail it was fitted on
        for q in (1e-4, 1e-3, 5e-3):
            d = float(np.quantile(impostor, q))
            print(f"  empirical F({d:.3f}) = {q:g}; fitted {1 - (1 - fpir(d, 1, tail)):.2g}")
        low = 0.0
        for band in model_info(name).calibration.bands:
            same = int(((genuine >= low) & (genuine < band.max_distance)).sum())
            other = int(((impostor >= low) & (impostor < band.max_distance)).sum())
            print(f"  {band.name:<12} {low:.2f}-{band.max_distance:<6.2f} same {same:>5}  different {other:>6}  "
                  f"same share {same / max(1, same + other):.1%}")
            low = band.max_distance


if __name__ == "__main__":
    main()
