"""Similarity bands: words for distances, calibrated per face model (faces/registry.py,
measured with bench/models.py and bench/bands.py)."""

from __future__ import annotations

from ..faces.registry import DEFAULT, Band, model_info

__all__ = ["BANDS", "Band", "band", "bands_for"]


def bands_for(model: str) -> tuple[Band, ...]:
    """The bands of a model, tightest first; the last is unbounded."""
    return model_info(model).calibration.bands


BANDS = bands_for(DEFAULT)  # the default model's (dlib): kept for callers that name no model


def band(distance: float, model: str = DEFAULT) -> str:
    """The band a distance falls in, for the model that measured it."""
    return next(b.name for b in bands_for(model) if distance < b.max_distance)
