"""The lower tail of a face model's different-person (impostor) distance distribution: how
often two different people's faces come closer than a distance. Fitted per model on labelled
photos by bench/bands.py and kept in the registry (`Calibration.tail`); search bands (FPIR at a
gallery size) and the opt-out deletion radius are both read from it, through these functions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Tail:
    """Below `u` (the `rate` quantile of impostor distances) the excesses u - d follow a
    generalised Pareto distribution (`shape`, `scale`); above it a normal (`mean`, `std`) stands
    in. `pairs`: how many different-person pairs it was fitted on."""

    u: float
    rate: float
    shape: float
    scale: float
    mean: float
    std: float
    pairs: int


def pair_rate(distance: float, tail: Tail) -> float:
    """Share of different-person pairs closer than `distance` (the impostor CDF)."""
    if distance >= tail.u:
        return max(tail.rate, NormalDist(tail.mean, tail.std).cdf(distance))
    excess = tail.u - distance
    if tail.shape < 0 and excess >= -tail.scale / tail.shape:
        return 0.0  # beyond the fitted tail's end: no stranger is that close
    if abs(tail.shape) < 1e-9:
        return tail.rate * math.exp(-excess / tail.scale)
    return tail.rate * (1 + tail.shape * excess / tail.scale) ** (-1 / tail.shape)


def distance_at_pair_rate(rate: float, tail: Tail) -> float:
    """The distance under which a share `rate` of different-person pairs fall (inverse of `pair_rate`)."""
    if rate >= tail.rate:
        return NormalDist(tail.mean, tail.std).inv_cdf(min(rate, 1 - 1e-12))
    ratio = rate / tail.rate
    if abs(tail.shape) < 1e-9:
        excess = -tail.scale * math.log(ratio)
    else:
        excess = tail.scale / tail.shape * (ratio ** -tail.shape - 1)
    if tail.shape < 0:
        excess = min(excess, -tail.scale / tail.shape)
    return tail.u - excess
