"""Similarity bands: words for distances, calibrated per face model (faces/registry.py,
measured with bench/models.py and bench/bands.py).

Two kinds. The model's fixed bands (`band`) are calibrated per pair of photos. At scale what
matters is how often a search for someone who is *not* in the index still returns a face
this close: the false-positive identification rate, FPIR(d, N) = 1 - (1 - F(d))^N for a
gallery of N faces, F the model's impostor distance CDF, whose lower tail is an extreme-value
fit (`registry.Tail`). `bands_at` gives bands that mean the same at every size: "very strong"
means fewer than 1 search in 1,000 for an absent person would show a face this close,
"strong" 1 in 100, "possible" 1 in 10, whatever N is; `meaning` says it in words.
"""

from __future__ import annotations

import math

from ..faces.registry import DEFAULT, Band, model_info
from ..faces.tail import Tail, distance_at_pair_rate, pair_rate

__all__ = ["BANDS", "Band", "FPIR_BANDS", "THRESHOLD_FPIR", "band", "bands_at", "bands_for", "distance_at", "fpir",
           "meaning", "threshold_at"]

FPIR_BANDS = (("very strong", 1e-3), ("strong", 1e-2), ("possible", 1e-1))
# The default search threshold stops where most searches for someone absent from the index would
# show a stranger this close (FPIR 1/2): results past it would say more about the index's size than
# about the person.
THRESHOLD_FPIR = 0.5


def bands_for(model: str) -> tuple[Band, ...]:
    """The bands of a model, tightest first; the last is unbounded."""
    return model_info(model).calibration.bands


BANDS = bands_for(DEFAULT)  # the default model's (dlib): kept for callers that name no model


def band(distance: float, model: str = DEFAULT) -> str:
    """The band a distance falls in, for the model that measured it."""
    return next(b.name for b in bands_for(model) if distance < b.max_distance)


def fpir(distance: float, gallery: int, tail: Tail) -> float:
    """How often a search for an absent person returns some face closer than `distance` in a
    gallery of `gallery` faces."""
    single = pair_rate(distance, tail)
    return 1.0 if single >= 1 else -math.expm1(max(1, gallery) * math.log1p(-single))


def distance_at(rate: float, gallery: int, tail: Tail) -> float:
    """The distance under which a search for an absent person returns a face with probability
    `rate`, in a gallery of `gallery` faces."""
    return distance_at_pair_rate(-math.expm1(math.log1p(-rate) / max(1, gallery)), tail)


def _tail(model: str) -> Tail:
    tail = model_info(model).calibration.tail
    if tail is None:
        raise ValueError(f"model {model} has no fitted impostor tail (bench/bands.py)")
    return tail


def bands_at(gallery: int, model: str = DEFAULT) -> tuple[Band, ...]:
    """Bands for a gallery of this size, each bounded by the distance at its FPIR."""
    tail = _tail(model)
    return tuple(Band(name, distance_at(rate, gallery, tail)) for name, rate in FPIR_BANDS) + (Band("weak", math.inf),)


def threshold_at(gallery: int, model: str, calibrated: float) -> float:
    """The default search threshold for a gallery of this size: the model's calibrated match
    threshold, narrowed as the gallery grows to the distance at THRESHOLD_FPIR (dlib: 0.595 at 300
    faces, 0.56 at 1,000, 0.51 at 10,000, 0.44 at 1 M, 0.41 at 10 M). A model without a fitted tail keeps
    its calibrated threshold."""
    tail = model_info(model).calibration.tail
    return calibrated if tail is None else min(calibrated, distance_at(THRESHOLD_FPIR, gallery, tail))


def meaning(distance: float, gallery: int, model: str = DEFAULT) -> str:
    """What a distance means in a gallery of this size, for a person."""
    rate = fpir(distance, gallery, _tail(model))
    if rate >= 0.5:
        return f"in an index of {gallery:,} faces, most searches for someone not in it show a face this close"
    odds = 1 / rate if rate > 0 else math.inf
    if odds > 1e9:
        return f"in an index of {gallery:,} faces, a stranger would practically never score this close"
    return (f"in an index of {gallery:,} faces, a stranger would score this close in about 1 search in "
            f"{_round(odds):,}")


def _round(value: float) -> int:
    digits = max(0, int(math.log10(value)) - 1)
    return int(round(value, -digits))
