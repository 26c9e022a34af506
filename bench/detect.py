"""Detector benchmark: how the scan size (FACETRAIL_DETECT_MAX_SIDE) trades speed for recall.

    .venv/bin/python bench/detect.py [--sizes 640,800,1024,1280] [--model sface_2021dec]

For each size it runs the model's detector (default: dlib's HOG with the CNN fallback, as
ingest does; `--model sface_2021dec`: YuNet) over
- the dev set: labelled photos with a face found, distractors with none, ms per image;
- large photos with small faces: 12 synthetic 4000x3000 photos, each with one dev portrait
  pasted in at a face size of 40 to 120 px, on a noisy background: faces found, ms per image.
The default was chosen from this table (see the README).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image

from facetrail.config import Settings
from facetrail.faces import load_engine

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "faces" / "dev"


def dev_set() -> list[tuple[np.ndarray, str]]:
    with (DEV / "manifest.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return [(np.asarray(Image.open(DEV / r["path"]).convert("RGB")), r["identity"]) for r in rows]


def small_faces_in_large_photos() -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """(photo, region where the face is) with faces from about 40 to 120 px wide."""
    rng = np.random.default_rng(1)
    portraits = sorted(DEV.glob("anthony_hopkins/*.jpg")) + sorted(DEV.glob("bill_gates/*.jpg"))[:2]
    photos = []
    for i, face_px in enumerate(np.linspace(40, 120, 12).astype(int)):
        portrait = Image.open(portraits[i % len(portraits)]).convert("RGB")
        side = int(face_px * 2.3)  # these portraits are about 2.3 face widths across
        portrait = portrait.resize((side, side * portrait.height // portrait.width))
        canvas = Image.fromarray(rng.integers(60, 190, size=(3000, 4000, 3), dtype=np.uint8))
        x, y = int(rng.integers(0, 4000 - side)), int(rng.integers(0, 3000 - portrait.height))
        canvas.paste(portrait, (x, y))
        photos.append((np.asarray(canvas), (x, y, x + side, y + portrait.height)))
    return photos


def inside(box, region) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return region[0] <= cx <= region[2] and region[1] <= cy <= region[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="640,800,1024,1280")
    parser.add_argument("--model", default="dlib_resnet_v1", help="whose detector (faces/registry.py)")
    args = parser.parse_args()
    dev = dev_set()
    large = small_faces_in_large_photos()
    labelled = sum(1 for _, who in dev if who not in ("none", "unknown"))
    empty = sum(1 for _, who in dev if who == "none")
    print(f"dev set: {labelled} labelled photos, {empty} without people; {len(large)} large photos with small faces")
    print(f"{'max side':>8}  {'dev found':>10}  {'no-face ok':>10}  {'dev ms/img':>10}  {'small faces':>11}  {'large ms/img':>12}")
    for size in map(int, args.sizes.split(",")):
        detector = load_engine(Settings(detect_max_side=size), args.model).detector
        started = time.perf_counter()
        found = clean = 0
        for pixels, who in dev:
            n = len(detector.detect(pixels))
            found += n > 0 and who not in ("none", "unknown")
            clean += n == 0 and who == "none"
        dev_ms = (time.perf_counter() - started) / len(dev) * 1000
        started = time.perf_counter()
        hits = sum(any(inside(d.box, region) for d in detector.detect(pixels)) for pixels, region in large)
        large_ms = (time.perf_counter() - started) / len(large) * 1000
        print(
            f"{size:>8}  {found:>4}/{labelled:<5}  {clean:>4}/{empty:<5}  {dev_ms:>10.1f}  "
            f"{hits:>5}/{len(large):<5}  {large_ms:>12.1f}"
        )


if __name__ == "__main__":
    main()
