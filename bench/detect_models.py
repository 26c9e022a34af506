"""Time per image of each model's detector and time per face of each descriptor on the dev
photos (decoded once beforehand), best of 3 passes to damp the noise of a shared machine.

    .venv/bin/python bench/detect_models.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from facetrail.config import Settings
from facetrail.faces import load_engine
from facetrail.images.decode import Limits, decode
from facetrail.search.evaluate import read_manifest

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "dev"


def best_of(passes: int, work) -> float:
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    pixels = [decode(p.path.read_bytes(), Limits()).pixels for p in read_manifest(DEV)]
    print(f"{len(pixels)} labelled dev photos, median side {int(np.median([max(p.shape[:2]) for p in pixels]))} px")
    for name in ("dlib_resnet_v1", "sface_2021dec", "fusion_dlib_sface", "retinaface_sface"):
        engine = load_engine(Settings(), name)
        detections = [engine.detector.detect(p) for p in pixels]
        faces = sum(len(d) for d in detections)
        detect = best_of(3, lambda: [engine.detector.detect(p) for p in pixels])
        embed = best_of(3, lambda: [engine.embedder.embed(p, d) for p, d in zip(pixels, detections)])
        print(f"{name:<20} detect {detect / len(pixels) * 1000:6.1f} ms/image   embed {embed / faces * 1000:6.1f} ms/face "
              f"({faces} faces)", flush=True)


if __name__ == "__main__":
    main()
