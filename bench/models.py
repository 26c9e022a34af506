"""Compare the registered face models on the labelled dev photos: detection and embedding time,
failures to enrol, and the identification and verification figures of `facetrail evaluate`
(search/metrics.py), plus the distances each model's thresholds are calibrated from.

    .venv/bin/python bench/models.py [MODEL ...]      (default: every registered model)

Prints one table row per model and, per model, the distance at FAR 1e-3 / 1e-4 (match
threshold / deletion radius), the mean distance between different people (the fusion's
scales) and how same-person and different-person pairs fall into the model's bands.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from facetrail.config import Settings
from facetrail.faces import load_engine
from facetrail.faces.registry import MODELS, model_info
from facetrail.images.decode import Limits, decode
from facetrail.search import metrics
from facetrail.search.evaluate import measure, read_manifest

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "dev"


def run(name: str, photos) -> tuple[np.ndarray, np.ndarray, float, float, int]:
    engine = load_engine(Settings(), name)
    vectors = np.zeros((len(photos), engine.dim), np.float32)
    usable = np.zeros(len(photos), bool)
    detect_s = embed_s = 0.0
    faces_embedded = 0
    for i, photo in enumerate(photos):
        pixels = decode(photo.path.read_bytes(), Limits()).pixels
        start = time.perf_counter()
        found = engine.faces(pixels)  # what the product runs (detect, filter, embed, order)
        total = time.perf_counter() - start
        start = time.perf_counter()
        detections = engine.detector.detect(pixels)
        detect_once = time.perf_counter() - start
        detect_s += detect_once
        embed_s += max(0.0, total - detect_once)
        faces_embedded += len(detections)
        if found:
            vectors[i], usable[i] = found[0].embedding, True
    return vectors, usable, detect_s / len(photos) * 1000, embed_s / max(1, faces_embedded) * 1000, faces_embedded


def distractor_faces(name: str) -> int:
    engine = load_engine(Settings(), name)
    import csv

    with (DEV / "manifest.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["identity"] == "none"]
    return sum(bool(engine.faces(decode((DEV / r["path"]).read_bytes(), Limits()).pixels)) for r in rows)


def main() -> None:
    names = sys.argv[1:] or list(MODELS)
    photos = read_manifest(DEV)
    identities = np.array([p.identity for p in photos])
    print(f"dev set: {len(photos)} labelled photos of {len(set(identities))} people")
    header = (f"{'model':<20} {'no face':>7} {'rank-1':>17} {'rank-10':>7} {'FNIR@FPIR.003':>17} "
              f"{'TAR@FAR1e-3':>17} {'TAR@FAR1e-4':>17} {'ms det/img':>10} {'ms emb/face':>11} {'faces on 49 no-person':>21}")
    lines = []
    for name in names:
        vectors, usable, det_ms, emb_ms, _ = run(name, photos)
        np.savez(f"/tmp/facetrail-bench-models-{name}.npz", vectors=vectors, usable=usable, identities=identities)
        figures = measure(vectors, photos, usable)["all"]

        def cell(key):
            f = figures[key]
            return f"{f['value']:.3f} ({f['low']:.2f}-{f['high']:.2f})"

        lines.append(f"{name:<20} {int((~usable).sum()):>7} {cell('rank_1'):>17} {figures['rank_10']['value']:>7.3f} "
                     f"{cell('fnir_at_fpir_0.003'):>17} {cell('tar_at_far_0.001'):>17} {cell('tar_at_far_0.0001'):>17} "
                     f"{det_ms:>10.1f} {emb_ms:>11.1f} {distractor_faces(name):>21}")
        genuine, impostor = metrics.pair_distances(vectors, identities, usable)
        bands = model_info(name).calibration.bands
        low = 0.0
        spread = []
        for band in bands:
            g = int(((genuine >= low) & (genuine < band.max_distance)).sum())
            i = int(((impostor >= low) & (impostor < band.max_distance)).sum())
            spread.append(f"{band.name} {g}/{i}")
            low = band.max_distance
        print(f"{name}: distance at FAR 1e-3 {metrics.threshold_at(impostor, 1e-3):.3f}, at FAR 1e-4 "
              f"{metrics.threshold_at(impostor, 1e-4):.3f}; impostor mean {impostor.mean():.3f}, genuine mean "
              f"{genuine.mean():.3f}; {len(genuine)} genuine / {len(impostor)} impostor pairs; "
              f"bands (same/different): {', '.join(spread)}", flush=True)
    print(header)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
