"""Copy-search benchmark: perceptual fingerprints (facetrail.images.copies) on the labelled dev photos.

    .venv/bin/python bench/copies.py [--originals 100] [--seed 0] [--rows 1000000]

Data. The real dev photos (../shared/data/faces/dev, read by path through manifest.csv and
decoded with facetrail's own decoder). A seeded sample of labelled face photos are the
originals; each gets the copies below. All other dev photos are distractors: other photos of
the same person, other people, and photos with no person. One pair of dev files is itself the
same photograph at two sizes (KNOWN_COPIES, checked by eye); it counts as a copy.

Two directions, both with the real nearest():
  * copy -> original: the index holds the fingerprints of all dev photos, each copy is a query;
  * original -> copies: the index holds every copy plus the photos that were not sampled, each
    original is a query.
A returned row is a true match when it is the same photograph, a false match otherwise.
Printed: recall and precision per kind of copy and overall at MAX_DISTANCE, the same across
thresholds, whole-image imagehash baselines (phash, dhash, whash with a mirrored query), the
false matches left at MAX_DISTANCE, photo-vs-photo false matches over all dev pairs, and the
time of fingerprint(), probe() and nearest() on --rows random stored hashes.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from facetrail.images import copies
from facetrail.images.decode import decode

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "dev"
KNOWN_COPIES = [("ben_affleck/5.jpg", "ben_affleck/10.jpg")]  # one photograph, 137x161 and 140x163
THRESHOLDS = (0, 2, 4, 6, 8, 10, 12)
NO_FACE = {"none", "unknown"}


# --------------------------------------------------------------------------- copies


def crop(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = image.size
    return image.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def resize(image: Image.Image, factor: float) -> Image.Image:
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.LANCZOS)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def brightness(image: Image.Image, factor: float) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def random_crop(image: Image.Image, rng: random.Random, most: float) -> Image.Image:
    return crop(image, *(rng.uniform(0, most) for _ in range(4)))


VARIANTS = {
    "resize-50%": lambda im, rng: resize(im, 0.5),
    "resize-25%": lambda im, rng: resize(im, 0.25),
    "jpeg-q30": lambda im, rng: jpeg(im, 30),
    "crop-5%-all": lambda im, rng: crop(im, 0.05, 0.05, 0.05, 0.05),
    "crop-10%-all": lambda im, rng: crop(im, 0.10, 0.10, 0.10, 0.10),
    "crop-10%-left": lambda im, rng: crop(im, 0.10, 0, 0, 0),
    "crop-10%-top": lambda im, rng: crop(im, 0, 0.10, 0, 0),
    "crop-10%-right": lambda im, rng: crop(im, 0, 0, 0.10, 0),
    "crop-10%-bottom": lambda im, rng: crop(im, 0, 0, 0, 0.10),
    "crop-asym-10/3/0/7%": lambda im, rng: crop(im, 0.10, 0.03, 0, 0.07),
    "crop-random-0..10%": lambda im, rng: random_crop(im, rng, 0.10),
    "bright-x0.7": lambda im, rng: brightness(im, 0.7),
    "bright-x1.3": lambda im, rng: brightness(im, 1.3),
    "mirror": lambda im, rng: ImageOps.mirror(im),
    "combo": lambda im, rng: jpeg(
        resize(brightness(random_crop(ImageOps.mirror(im), rng, 0.08), rng.uniform(0.8, 1.2)), 0.5), 50
    ),
}
COMBO_TEXT = "mirror + random crop 0..8%/side + brightness x0.8..1.2 + resize 50% + JPEG q50"


# --------------------------------------------------------------------------- data


def load_dev() -> tuple[list[str], list[str], list[Image.Image]]:
    manifest = DEV / "manifest.csv"
    if not manifest.exists():
        sys.exit(f"dev photos not found at {DEV}")
    paths, identities, images = [], [], []
    with manifest.open() as handle:
        for row in csv.DictReader(handle):
            decoded = decode((DEV / row["path"]).read_bytes())
            paths.append(row["path"])
            identities.append(row["identity"])
            images.append(Image.fromarray(decoded.pixels))
    return paths, identities, images


def copy_groups(paths: list[str]) -> list[int]:
    """Group id per dev photo: photos of one photograph (KNOWN_COPIES) share an id."""
    group = list(range(len(paths)))
    for a, b in KNOWN_COPIES:
        if a in paths and b in paths:
            group[paths.index(b)] = group[paths.index(a)]
    return group


def distance_matrix(probes: list[copies.Probe], stored: np.ndarray) -> np.ndarray:
    """Distances of every query to every stored row, through nearest() with no threshold."""
    out = np.empty((len(probes), len(stored)), dtype=np.int16)
    for q, probe in enumerate(probes):
        for row, dist in copies.nearest(probe, stored, copies.HASH_BITS):
            out[q, row] = dist
    return out


# --------------------------------------------------------------------------- reporting


def pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def ratio(tp: int, fp: int) -> float:
    return tp / (tp + fp) if tp + fp else 1.0


def print_kind_table(title: str, kinds: list[str], rows: dict[str, tuple[float, int, int, int]]) -> None:
    print(f"\n{title}")
    print(f"  {'copy kind':<22} {'recall':>7} {'precision':>10} {'true':>6} {'false':>6}  max dist")
    for kind in kinds:
        recall, tp, fp, worst = rows[kind]
        print(f"  {kind:<22} {pct(recall):>7} {pct(ratio(tp, fp)):>10} {tp:>6} {fp:>6}  {worst:>8}")
    recall, tp, fp, worst = rows["ALL"]
    print(f"  {'ALL':<22} {pct(recall):>7} {pct(ratio(tp, fp)):>10} {tp:>6} {fp:>6}  {worst:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--originals", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    t_start = time.perf_counter()
    threshold = copies.MAX_DISTANCE

    paths, identities, images = load_dev()
    group = np.array(copy_groups(paths))
    faces = [i for i, ident in enumerate(identities) if ident not in NO_FACE]
    rng = random.Random(args.seed)
    sample = sorted(rng.sample(faces, min(args.originals, len(faces))))
    others = [i for i in range(len(paths)) if i not in set(sample)]
    kinds = list(VARIANTS)
    print(f"dev set: {len(paths)} photos ({len(faces)} labelled faces, {len(paths) - len(faces)} without a "
          f"labelled person), {len(set(identities) - NO_FACE)} identities")
    print(f"originals: {len(sample)} labelled face photos (seed {args.seed}), {len(kinds)} copies each "
          f"= {len(sample) * len(kinds)} copies; combo = {COMBO_TEXT}")
    print(f"design: 1 stored 64-bit phash of the central {100 - 200 * copies.MARGIN:.0f}% window; "
          f"{copies.PROBES} query hashes ({copies.PROBES // 2} aligned windows x as is/mirrored); "
          f"MAX_DISTANCE = {threshold}")

    variant_images, variant_kind, variant_origin = [], [], []
    for i in sample:
        for kind, make in VARIANTS.items():
            variant_images.append(make(images[i], rng))
            variant_kind.append(kind)
            variant_origin.append(i)
    variant_kind_arr = np.array(variant_kind)
    variant_origin_arr = np.array(variant_origin)

    # fingerprints and probes (timed on the dev photos: the production input, decoded RGB arrays)
    pixels = [np.asarray(im) for im in images]
    t = time.perf_counter()
    dev_fps = [copies.fingerprint(p) for p in pixels]
    fp_ms = (time.perf_counter() - t) / len(pixels) * 1000
    t = time.perf_counter()
    dev_probes = [copies.probe(p) for p in pixels]
    probe_ms = (time.perf_counter() - t) / len(pixels) * 1000
    var_fps = [copies.fingerprint(im) for im in variant_images]
    var_probes = [copies.probe(im) for im in variant_images]
    dev_table = np.stack([fp.row() for fp in dev_fps])

    # ---------------------------------------------------------------- copy -> original
    fwd = distance_matrix(var_probes, dev_table)  # copies x dev photos
    fwd_truth = group[variant_origin_arr][:, None] == group[None, :]
    # ---------------------------------------------------------------- original -> copies
    rev_table = np.concatenate([np.stack([fp.row() for fp in var_fps]), dev_table[others]])
    rev_origin = np.concatenate([variant_origin_arr, np.array(others)])
    rev_kind = np.array(variant_kind + ["(dev photo)"] * len(others))
    rev = distance_matrix([dev_probes[i] for i in sample], rev_table)  # originals x stored rows
    rev_truth = group[np.array(sample)][:, None] == group[rev_origin][None, :]

    def forward_rows(t: int, kind_filter=None) -> dict[str, tuple[float, int, int, int]]:
        rows = {}
        for kind in kinds + ["ALL"]:
            sel = np.ones(len(fwd), bool) if kind == "ALL" else variant_kind_arr == kind
            d, truth = fwd[sel], fwd_truth[sel]
            hit = d <= t
            found = (hit & truth).any(axis=1)
            worst = int(np.where(truth, d, 999).min(axis=1).max())
            rows[kind] = (found.mean(), int((hit & truth).sum()), int((hit & ~truth).sum()), worst)
        return rows

    def reverse_rows(t: int) -> dict[str, tuple[float, int, int, int]]:
        rows = {}
        hit = rev <= t
        for kind in kinds + ["ALL"]:
            cols = np.ones(len(rev_kind), bool) if kind == "ALL" else rev_kind == kind
            truth = rev_truth[:, cols]
            tp = int((hit[:, cols] & truth).sum())
            fp = int((hit[:, cols] & ~truth).sum())
            worst = int(rev[:, cols][truth].max())
            rows[kind] = (tp / truth.sum(), tp, fp, worst)
        return rows

    f_rows, r_rows = forward_rows(threshold), reverse_rows(threshold)
    print_kind_table(
        f"COPY -> ORIGINAL at MAX_DISTANCE={threshold}: each copy searched in the {len(paths)} dev photos "
        "(recall = original found; precision = true / returned rows; max dist = largest distance to "
        "its original)", kinds, f_rows)
    print_kind_table(
        f"ORIGINAL -> COPIES at MAX_DISTANCE={threshold}: each original searched in {len(rev_table)} rows "
        f"({len(variant_images)} copies + {len(others)} other dev photos); precision per kind = over the "
        "rows of that kind", kinds, r_rows)
    extra_fp = int(((rev <= threshold) & ~rev_truth)[:, rev_kind == "(dev photo)"].sum())
    print(f"  false matches on the other dev photos in this direction: {extra_fp}")

    # ---------------------------------------------------------------- thresholds
    fwd_pairs = int((~fwd_truth).sum())
    print("\nACROSS THRESHOLDS (bits of 64; phash distances are almost always even)")
    print(f"  {'t':>3} | {'copy->orig recall':>17} {'worst kind':>10} {'precision':>9} {'false':>6} "
          f"{'per pair':>8} | {'orig->copy recall':>17} {'worst kind':>10} {'precision':>9} {'false':>6}")
    for t in THRESHOLDS:
        fr, rr = forward_rows(t), reverse_rows(t)
        f_all, r_all = fr["ALL"], rr["ALL"]
        f_worst = min(fr[k][0] for k in kinds)
        r_worst = min(rr[k][0] for k in kinds)
        mark = "  <- MAX_DISTANCE" if t == threshold else ""
        print(f"  {t:>3} | {pct(f_all[0]):>17} {pct(f_worst):>10} {pct(ratio(f_all[1], f_all[2])):>9} "
              f"{f_all[2]:>6} {f_all[2] / fwd_pairs:>8.1e} | {pct(r_all[0]):>17} {pct(r_worst):>10} "
              f"{pct(ratio(r_all[1], r_all[2])):>9} {r_all[2]:>6}{mark}")

    # ---------------------------------------------------------------- false matches left
    print(f"\nFALSE MATCHES AT MAX_DISTANCE={threshold} (copy -> original direction), by pair of dev photos")
    pairs: Counter = Counter()
    for q, row in zip(*np.nonzero((fwd <= threshold) & ~fwd_truth)):
        pairs[(paths[variant_origin[q]], paths[row], int(fwd[q, row]))] += 1
    if not pairs:
        print("  none")
    merged: dict[tuple[str, str], list] = defaultdict(lambda: [99, 0])
    for (a, b, d), n in pairs.items():
        merged[(a, b)][0] = min(merged[(a, b)][0], d)
        merged[(a, b)][1] += n
    for (a, b), (d, n) in sorted(merged.items(), key=lambda x: (x[1][0], x[0])):
        same = identities[paths.index(a)] == identities[paths.index(b)]
        print(f"  {a:<26} -> {b:<26} min dist {d:>2}, {n:>2} copies  ({'same person' if same else 'different people'})")

    # ---------------------------------------------------------------- photo vs photo
    full = distance_matrix(dev_probes, dev_table)
    ident = np.array(identities)
    different = group[:, None] != group[None, :]
    same_person = (ident[:, None] == ident[None, :]) & ~np.isin(ident, list(NO_FACE))[:, None] & different
    other = different & ~same_person
    print(f"\nDEV PHOTO vs DEV PHOTO (probe of one, fingerprint of the other; {len(paths)} x {len(paths) - 1} "
          "ordered pairs of different photographs)")
    for t in THRESHOLDS:
        mark = "  <- MAX_DISTANCE" if t == threshold else ""
        print(f"  t={t:>2}: same person {int((full <= t)[same_person].sum()):>4} of {int(same_person.sum())}, "
              f"other photos {int((full <= t)[other].sum()):>4} of {int(other.sum())}{mark}")
    known = [(a, b, int(full[paths.index(a), paths.index(b)])) for a, b in KNOWN_COPIES if a in paths]
    for a, b, d in known:
        print(f"  known copy in the dev set: {a} vs {b}: distance {d}")

    # ---------------------------------------------------------------- baselines
    print("\nBASELINES: one whole-image imagehash hash stored; query = the copy's hash and its mirror's "
          "(copy -> original)")
    crop_kinds = [k for k in kinds if k.startswith("crop")]
    crop_sel = np.isin(variant_kind_arr, crop_kinds)
    print(f"  {'hash':<8} {'t':>3} {'recall':>7} {'crops':>7} {'others':>7} {'precision':>9} {'false':>6}")
    for name, fn in (("phash", imagehash.phash), ("dhash", imagehash.dhash), ("whash", imagehash.whash)):
        stored = np.array([copies.to_int64(int(str(fn(im)), 16)) for im in images], dtype=np.int64)
        queries = [
            copies.Probe((copies.to_int64(int(str(fn(im)), 16)),
                          copies.to_int64(int(str(fn(ImageOps.mirror(im))), 16))))
            for im in variant_images
        ]
        d = distance_matrix(queries, stored[:, None])
        for t in (4, 8, 12, 16):
            hit = d <= t
            found = (hit & fwd_truth).any(axis=1)
            tp, fp = int((hit & fwd_truth).sum()), int((hit & ~fwd_truth).sum())
            print(f"  {name:<8} {t:>3} {pct(found.mean()):>7} {pct(found[crop_sel].mean()):>7} "
                  f"{pct(found[~crop_sel].mean()):>7} {pct(ratio(tp, fp)):>9} {fp:>6}")
    ours = fwd <= threshold
    found = (ours & fwd_truth).any(axis=1)
    print(f"  {'ours':<8} {threshold:>3} {pct(found.mean()):>7} {pct(found[crop_sel].mean()):>7} "
          f"{pct(found[~crop_sel].mean()):>7} {pct(ratio(int((ours & fwd_truth).sum()), int((ours & ~fwd_truth).sum()))):>9} "
          f"{int((ours & ~fwd_truth).sum()):>6}")

    # ---------------------------------------------------------------- timings
    gen = np.random.default_rng(args.seed)
    big = gen.integers(-(2**63), 2**63, size=(args.rows, copies.HASH_COLUMNS), dtype=np.int64)
    planted = args.rows // 2
    big[planted] = dev_table[sample[0]]
    query = dev_probes[sample[0]]
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        result = copies.nearest(query, big, threshold)
        runs.append(time.perf_counter() - t)
    single = []
    for _ in range(5):
        t = time.perf_counter()
        copies.nearest(dev_fps[sample[0]], big, threshold)
        single.append(time.perf_counter() - t)
    print("\nTIMINGS (one thread)")
    print(f"  fingerprint(): {fp_ms:.2f} ms per image; probe(): {probe_ms:.1f} ms per image "
          f"(mean over the {len(paths)} dev photos, from decoded RGB arrays)")
    print(f"  nearest(probe, {args.rows:,} random rows, t={threshold}): median {statistics.median(runs) * 1000:.0f} ms, "
          f"best {min(runs) * 1000:.0f} ms ({len(query.hashes)} query hashes); found {result[:3]} "
          f"(planted row {planted})")
    print(f"  nearest(fingerprint, same rows): median {statistics.median(single) * 1000:.1f} ms (1 query hash, "
          "no crop or mirror tolerance)")
    print(f"\ntotal bench time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
