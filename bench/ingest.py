"""Ingest benchmark: `facetrail index` against the face_recognition library's own pipeline.

    .venv/bin/python bench/ingest.py [FOLDER] [--workers N] [--repeat N]

On the same images (default: the dev set in ../shared/data/faces/dev) it times
- `facetrail index` (a fresh data folder, all cores), and
- face_recognition 1.3.0: load_image_file + face_locations + face_encodings, the way its
  README does it, once in one process and once spread over the same number of processes,
and prints images/s, faces/s, their ratio and how many faces each missed. With --repeat N each
is run N times, interleaved, and the fastest run of each is reported (a shared machine is noisy). "Missed" counts
labelled photos (manifest.csv) where no face was found; without a manifest, photos where
the other pipeline found a face and this one did not.

face_recognition is installed for the benchmark only (`pip install --no-deps`, beside
dlib-bin). It is never a dependency of facetrail.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "faces" / "dev"
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def ensure_face_recognition() -> None:
    if importlib.util.find_spec("face_recognition") is None:
        print("installing face_recognition 1.3.0 for the benchmark (--no-deps)...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "face-recognition==1.3.0", "setuptools<81"],
            check=True,
        )


def images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def labelled(folder: Path) -> set[str] | None:
    manifest = folder / "manifest.csv"
    if not manifest.exists():
        return None
    with manifest.open() as handle:
        return {
            str(folder / row["path"]) for row in csv.DictReader(handle) if row["identity"] not in ("none", "unknown")
        }


def fr_one(path: str) -> int:
    import face_recognition

    image = face_recognition.load_image_file(path)
    locations = face_recognition.face_locations(image)
    return len(face_recognition.face_encodings(image, locations))


def run_face_recognition(paths: list[Path], workers: int) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    if workers == 1:
        counts = [fr_one(str(p)) for p in paths]
    else:
        with ProcessPoolExecutor(workers) as pool:
            counts = list(pool.map(fr_one, map(str, paths), chunksize=4))
    return time.perf_counter() - started, dict(zip(map(str, paths), counts))


def run_facetrail(folder: Path, workers: int) -> tuple[float, dict[str, int]]:
    with tempfile.TemporaryDirectory() as data_dir:
        command = [sys.executable, "-m", "facetrail", "--data-dir", data_dir, "index", str(folder)]
        command += ["--workers", str(workers), "--legal-basis", "benchmark photographs"]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started

        from sqlalchemy import func, select

        from facetrail.store import Database, Face, Location

        db = Database(f"sqlite:///{data_dir}/facetrail.db")
        with db.session() as session:
            rows = session.execute(
                select(Location.location, func.count(Face.id))
                .outerjoin(Face, Face.image_id == Location.image_id)
                .group_by(Location.location)
            )
            counts = {location: n for location, n in rows}
        db.close()
    return seconds, counts


def report(name: str, seconds: float, counts: dict[str, int], paths: list[Path], missed: int) -> float:
    faces = sum(counts.get(str(p), 0) for p in paths)
    rate = len(paths) / seconds
    print(
        f"{name:<34} {seconds:7.1f} s  {rate:7.2f} images/s  {faces / seconds:7.2f} faces/s"
        f"  {faces:5d} faces  {missed:3d} missed"
    )
    return rate


def missed_by(counts: dict[str, int], other: dict[str, int], paths: list[Path], truth: set[str] | None) -> int:
    if truth is not None:
        return sum(1 for p in paths if str(p) in truth and not counts.get(str(p)))
    return sum(1 for p in paths if other.get(str(p)) and not counts.get(str(p)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=DEV)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each; the fastest is reported.")
    args = parser.parse_args()
    ensure_face_recognition()
    paths = images_in(args.folder)
    truth = labelled(args.folder)
    print(f"{len(paths)} images in {args.folder}, {args.workers} workers, {os.cpu_count()} cores")
    print("(warming the page cache...)")
    for p in paths:
        p.read_bytes()

    runs: dict[str, list[tuple[float, dict[str, int]]]] = {"ft": [], "fr1": [], "frn": []}
    for attempt in range(args.repeat):  # interleaved, so a noisy moment does not favour one side
        runs["ft"].append(run_facetrail(args.folder, args.workers))
        runs["fr1"].append(run_face_recognition(paths, 1))
        if args.workers > 1:
            runs["frn"].append(run_face_recognition(paths, args.workers))
        if args.repeat > 1:
            print(f"run {attempt + 1}: " + ", ".join(f"{name} {seconds:.1f} s" for name, done in runs.items()
                                                     for seconds, _ in done[-1:]), flush=True)
    ft_seconds, ft_counts = min(runs["ft"], key=lambda run: run[0])
    fr1_seconds, fr1_counts = min(runs["fr1"], key=lambda run: run[0])
    frn_seconds, frn_counts = min(runs["frn"], key=lambda run: run[0]) if runs["frn"] else (fr1_seconds, fr1_counts)

    print()
    ft = report("facetrail index", ft_seconds, ft_counts, paths, missed_by(ft_counts, fr1_counts, paths, truth))
    fr1 = report("face_recognition, 1 process", fr1_seconds, fr1_counts, paths,
                 missed_by(fr1_counts, ft_counts, paths, truth))
    frn = report(f"face_recognition, {args.workers} processes", frn_seconds, frn_counts, paths,
                 missed_by(frn_counts, ft_counts, paths, truth))
    print()
    print(f"speed-up vs face_recognition in 1 process:         {ft / fr1:5.1f}x")
    print(f"speed-up vs face_recognition in {args.workers} processes:         {ft / frn:5.1f}x")
    faces = sum(ft_counts.get(str(p), 0) for p in paths)
    print(f"facetrail faces/s per core: {faces / ft_seconds / args.workers:.1f}")


if __name__ == "__main__":
    main()
