"""Face engine: find, align and embed faces."""

from .engine import FaceEngine, load_engine
from .types import Box, Detection, Detector, Embedder, Face

__all__ = ["Box", "Detection", "Detector", "Embedder", "Face", "FaceEngine", "load_engine"]
