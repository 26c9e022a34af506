"""Searching with several photos of one person (issue 17 item 3), on the labelled dev photos.

    .venv/bin/python bench/multiphoto.py [--cache FILE] [--top-k 50]

Each photo's face is a query descriptor; a search with k photos ranks every gallery face by its
distance to the nearest of the k descriptors (the best match over the photos) and returns those
within the model's match threshold, at most --top-k. For each person with 4+ labelled photos and
each run of k consecutive photos of them (every start, k = 1, 2, 3), the gallery is the whole dev
set (labelled photos and every face of the distractor photos) less the query photos.

Printed per k: searches, rank-1 (the nearest face is the same person), recall (share of the
person's other photos returned), and strangers returned per search (faces of other people within
the threshold), with the same figures for mean-of-descriptors fusion beside, for comparison.
Descriptors come from facetrail's own decoder and face engine (bench/optout.py's `descriptors`).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from optout import descriptors, distances

from facetrail.config import Settings
from facetrail.governance.optout import radii


def runs(indices: list[int], k: int) -> list[list[int]]:
    """Every run of k consecutive photos of a person (wrapping), or none if they have too few."""
    if len(indices) < max(4, k + 1):
        return []
    return [[indices[(start + j) % len(indices)] for j in range(k)] for start in range(len(indices))]


def evaluate(who: list[str], vectors: np.ndarray, k: int, threshold: float, top_k: int, fuse: str) -> dict:
    people: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(who):
        if not name.startswith("other-"):
            people[name].append(i)
    labels = np.array(who)
    searches = hits1 = strangers = 0
    recall: list[float] = []
    for name, indices in people.items():
        for query in runs(indices, k):
            gallery = np.setdiff1d(np.arange(len(who)), query)
            if fuse == "best":
                d = distances(vectors[query], vectors[gallery]).min(axis=0)
            else:
                centre = vectors[query].mean(axis=0, keepdims=True)
                d = distances(centre, vectors[gallery])[0]
            order = np.argsort(d)
            shown = [g for g in order[:top_k] if d[g] < threshold]
            same = labels[gallery] == name
            searches += 1
            hits1 += int(same[order[0]])
            recall.append(sum(same[g] for g in shown) / max(1, same.sum()))
            strangers += sum(not same[g] for g in shown)
    return {"searches": searches, "rank1": hits1 / max(1, searches), "recall": float(np.mean(recall)) if recall else 0,
            "strangers": strangers / max(1, searches)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, help="keep the dev descriptors in this .npz file")
    parser.add_argument("--top-k", type=int, default=50)
    args = parser.parse_args()
    who, vectors = descriptors(args.cache)
    threshold = radii(Settings()).block
    people = len({w for w in who if not w.startswith("other-")})
    print(f"dev set: {len(who)} faces, {people} labelled people; match threshold {threshold:.3f}; top-{args.top_k}")
    print(f"{'photos':>6} {'searches':>8} | {'best match: rank-1':>18} {'recall':>7} {'strangers':>9} | "
          f"{'mean fusion: rank-1':>19} {'recall':>7} {'strangers':>9}")
    for k in (1, 2, 3):
        best = evaluate(who, vectors, k, threshold, args.top_k, "best")
        mean = evaluate(who, vectors, k, threshold, args.top_k, "mean")
        print(f"{k:>6} {best['searches']:>8} | {best['rank1']:>18.3f} {best['recall']:>7.3f} {best['strangers']:>9.2f} | "
              f"{mean['rank1']:>19.3f} {mean['recall']:>7.3f} {mean['strangers']:>9.2f}")


if __name__ == "__main__":
    main()
