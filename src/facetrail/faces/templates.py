"""The descriptors of a few photos by every registered face model, for what must outlive a model
switch without keeping the photos: an opt-out (governance/optout.py) and a watch's template
(governance/watches.py). Each keeps one set per model; the filters and the watch checker read the
active model's, so `facetrail reembed` loses neither.

Each photo gives the largest face each model finds in it (as a search chooses by default); a
photo in which a model finds no face gives that model no row, and a model whose weights are not
installed gives no set at all (a switch to it is then refused while an opt-out lacks its set:
ingest/reembed.py). Engines are loaded once per process and configuration, and used one thread
at a time (dlib's detectors are not safe to share between threads).
"""

from __future__ import annotations

import threading

import numpy as np

from ..config import Settings
from .engine import FaceEngine
from .registry import MODELS, ModelError, load

# the settings an engine's build reads (faces/registry.py): engines differing in them are not shared
ENGINE_SETTINGS = ("detect_max_side", "detect_min_side", "cnn_fallback_max_side", "min_face_size")

_engines: dict[tuple, tuple[FaceEngine, threading.Lock] | None] = {}
_loading = threading.Lock()


def _engine(name: str, settings: Settings) -> tuple[FaceEngine, threading.Lock] | None:
    """Model `name`'s engine with its lock, loaded once; None if its weights are not installed."""
    key = (name, *(getattr(settings, field) for field in ENGINE_SETTINGS))
    with _loading:
        if key not in _engines:
            try:
                _engines[key] = (load(name, settings), threading.Lock())
            except ModelError:
                _engines[key] = None
        return _engines[key]


def largest_faces(engine: FaceEngine, pixels_list: list[np.ndarray]) -> np.ndarray:
    """The descriptor of the largest face in each image that has one (rows x the model's dim)."""
    rows = [faces[0].embedding for faces in (engine.faces(pixels) for pixels in pixels_list) if faces]
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, engine.dim), np.float32)


def describe_with_each_model(settings: Settings, pixels_list: list[np.ndarray],
                             skip: frozenset[str] | set[str] = frozenset()) -> dict[str, np.ndarray]:
    """model name -> the descriptors of the largest face in each image (RGB uint8) where that model
    finds one, for every registered model but those in `skip` (e.g. the one that described them
    already). Models that find no face in any image, or are not installed, are left out."""
    described = {}
    for name in MODELS:
        held = None if name in skip else _engine(name, settings)
        if held is None:
            continue
        engine, lock = held
        with lock:
            rows = largest_faces(engine, pixels_list)
        if len(rows):
            described[name] = rows
    return described
