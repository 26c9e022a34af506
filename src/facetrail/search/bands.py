"""Similarity bands: words for distances, calibrated on the dev set with bench/bands.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Band:
    name: str
    max_distance: float  # exclusive upper bound


BANDS = (
    Band("very strong", 0.40),
    Band("strong", 0.50),
    Band("possible", 0.60),
    Band("weak", float("inf")),
)


def band(distance: float) -> str:
    return next(b.name for b in BANDS if distance < b.max_distance)
