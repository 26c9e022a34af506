"""Identification and verification error rates from labelled descriptors (NIST FRTE terms),
with percentile bootstrap intervals. Plain arrays in, plain numbers out; `evaluate.py` runs
the models and the protocol.

Searches. Each identity with a usable photo is enrolled by one photo (its gallery entry); every
other photo of an enrolled identity is a *mated* search. Every photo is also searched once with
its own identity left out of the gallery: a *non-mated* search (the person is not there).
Photos with no face are failures to enrol and count as misses in the mated figures.

- rank-k: share of mated searches whose mate is among the k nearest gallery entries;
- FNIR at FPIR x: the threshold is set so that a share x of non-mated searches return a
  candidate closer than it; FNIR is the share of mated searches whose mate is not the first
  candidate or not under that threshold (rank 1). With n non-mated searches an FPIR below 1/n
  cannot be resolved: the threshold is then just under the closest non-mated candidate;
- TAR at FAR x: over all pairs of photos, the share of same-person pairs under the distance
  that a share x of different-person pairs fall under.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP_ROUNDS = 300
RANKS = (1, 10)


@dataclass(frozen=True)
class Searches:
    """Mated searches: rank of the mate (1-based; 0 = no face, a miss) and its distance;
    non-mated searches: distance of the nearest (wrong) candidate."""

    mate_rank: np.ndarray
    mate_distance: np.ndarray
    nonmated_nearest: np.ndarray


def searches(vectors: np.ndarray, identities: np.ndarray, usable: np.ndarray) -> Searches:
    """The mated and non-mated searches of the protocol above (vectors: one row per photo;
    `usable`: a face was found)."""
    distances = np.linalg.norm(vectors[:, None, :] - vectors[None, :, :], axis=2)
    gallery = _gallery(identities, usable)
    gallery_ids = identities[gallery]
    ranks, mate_d, nonmated = [], [], []
    for i in range(len(identities)):
        enrolled = identities[i] in set(gallery_ids)
        if usable[i]:
            to_gallery = distances[i, gallery]
            others = to_gallery[gallery_ids != identities[i]]
            if len(others):
                nonmated.append(others.min())
        if not enrolled or i in gallery:
            continue
        if not usable[i]:
            ranks.append(0)
            mate_d.append(np.inf)
            continue
        to_gallery = distances[i, gallery]
        mate = to_gallery[gallery_ids == identities[i]][0]
        ranks.append(1 + int((to_gallery < mate).sum()))
        mate_d.append(mate)
    return Searches(np.array(ranks, int), np.array(mate_d, float), np.array(nonmated, float))


def _gallery(identities: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Index of the first usable photo of each identity that has another photo to search with."""
    chosen = []
    for identity in dict.fromkeys(identities):
        rows = np.flatnonzero(identities == identity)
        first = [r for r in rows if usable[r]]
        if first and len(rows) > 1:
            chosen.append(first[0])
    return np.array(chosen, int)


def rank_k(found: Searches, k: int) -> float:
    ranks = found.mate_rank
    return float(((ranks >= 1) & (ranks <= k)).mean()) if len(ranks) else float("nan")


def threshold_at(impostors: np.ndarray, rate: float) -> float:
    """The distance under which a share `rate` of impostor distances fall (just under the
    closest one if `rate` is below 1/len)."""
    ordered = np.sort(impostors)
    count = int(np.floor(rate * len(ordered)))
    return float(ordered[count]) if count < len(ordered) else float("inf")


def fnir_at(found: Searches, fpir: float) -> float:
    if not len(found.mate_rank):
        return float("nan")
    threshold = threshold_at(found.nonmated_nearest, fpir)
    hit = (found.mate_rank == 1) & (found.mate_distance < threshold)
    return float(1 - hit.mean())


def pair_distances(vectors: np.ndarray, identities: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(same-person distances, different-person distances) over all pairs of usable photos."""
    rows = np.flatnonzero(usable)
    v, who = vectors[rows], identities[rows]
    distances = np.linalg.norm(v[:, None, :] - v[None, :, :], axis=2)
    upper = np.triu_indices(len(rows), 1)
    same = who[upper[0]] == who[upper[1]]
    return distances[upper][same], distances[upper][~same]


def tar_at(genuine: np.ndarray, impostor: np.ndarray, far: float) -> float:
    return float((genuine < threshold_at(impostor, far)).mean()) if len(genuine) else float("nan")


@dataclass(frozen=True)
class Figure:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high}


def _interval(samples: list[float]) -> tuple[float, float]:
    values = np.array([s for s in samples if not np.isnan(s)])
    if not len(values):
        return float("nan"), float("nan")
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def bootstrap(statistic, arrays: tuple[np.ndarray, ...], rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> Figure:
    """`statistic(*arrays)` with a 95 % percentile interval, each array resampled on its own."""
    rng = np.random.default_rng(seed)
    samples = [
        statistic(*(a[rng.integers(0, len(a), len(a))] if len(a) else a for a in arrays)) for _ in range(rounds)
    ]
    return Figure(float(statistic(*arrays)), *_interval(samples))


def figures(vectors: np.ndarray, identities: np.ndarray, usable: np.ndarray, fpir: float = 0.003,
            fars: tuple[float, ...] = (1e-3, 1e-4)) -> dict:
    """Every figure of the protocol, each a {value, low, high} dict, with the counts behind them."""
    found = searches(vectors, identities, usable)
    genuine, impostor = pair_distances(vectors, identities, usable)

    def ranked(k):
        return lambda r, d: rank_k(Searches(r, d, found.nonmated_nearest), k)

    result = {f"rank_{k}": bootstrap(ranked(k), (found.mate_rank, found.mate_distance)).as_dict() for k in RANKS}
    # mated rank and distance are resampled together (one search), the non-mated apart
    mated = np.column_stack([found.mate_rank, found.mate_distance])
    result[f"fnir_at_fpir_{fpir:g}"] = bootstrap(
        lambda m, n: fnir_at(Searches(m[:, 0].astype(int), m[:, 1], n), fpir), (mated, found.nonmated_nearest)
    ).as_dict()
    for far in fars:
        result[f"tar_at_far_{far:g}"] = bootstrap(lambda g, i, far=far: tar_at(g, i, far), (genuine, impostor)).as_dict()
    result["counts"] = {
        "photos": int(len(identities)),
        "failures_to_enrol": int((~usable).sum()),
        "mated_searches": int(len(found.mate_rank)),
        "nonmated_searches": int(len(found.nonmated_nearest)),
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(len(impostor)),
        "gallery": int(len(_gallery(identities, usable))),
    }
    result["failure_to_enrol"] = float((~usable).mean()) if len(usable) else float("nan")
    return result
