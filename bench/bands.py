"""Calibrate the similarity bands shown in the web app on the labelled dev photos.

    .venv/bin/python bench/bands.py [DATA_DIR]

Takes the largest face of every labelled dev photo (from an index of the dev set in
DATA_DIR, or a fresh one), forms every pair, and prints for each distance band how many
pairs are the same person and how many are not, and the share of same-person pairs
among them (how far a result in that band can be trusted).
"""

from __future__ import annotations

import csv
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np
from sqlalchemy import select

from facetrail.config import Settings
from facetrail.index import open_index
from facetrail.governance.actors import Actor
from facetrail.ingest import Ingestor, walk
from facetrail.ingest.sources import folder_source
from facetrail.search.bands import BANDS
from facetrail.store import Database, Face, Location

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "dev"


def main() -> None:
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    settings = Settings(data_dir=data_dir)
    db = Database(settings.db_url)
    if not (data_dir / "index").exists():
        with db.session() as session, session.begin():
            source = folder_source(session, Actor("bench", "admin", "bench"), [DEV], "labelled test photographs (benchmark)")
        Ingestor(settings, db, open_index(settings, db), source).run(walk([DEV]))
    with (DEV / "manifest.csv").open() as handle:
        identity = {str(DEV / r["path"]): r["identity"] for r in csv.DictReader(handle)}
    vectors: dict[str, tuple[str, np.ndarray]] = {}
    with db.session() as session:
        rows = session.execute(
            select(Location.location, Face.embedding).join(Face, Face.image_id == Location.image_id).where(Face.idx == 0)
        )
        for location, blob in rows:
            who = identity.get(location, "none")
            if who not in ("none", "unknown"):
                vectors[location] = (who, np.frombuffer(blob, np.float32))
    pairs = [
        (a == b, float(np.linalg.norm(va - vb))) for (a, va), (b, vb) in itertools.combinations(vectors.values(), 2)
    ]
    print(f"{len(vectors)} faces, {len(pairs)} pairs ({sum(s for s, _ in pairs)} same-person)")
    print(f"{'band':<12} {'distance':<13} {'same':>6} {'different':>10} {'same share':>11}")
    low = 0.0
    for band in BANDS:
        inside = [same for same, d in pairs if low <= d < band.max_distance]
        same = sum(inside)
        share = same / len(inside) if inside else float("nan")
        print(f"{band.name:<12} {low:.2f}-{band.max_distance:<8.2f} {same:>6} {len(inside) - same:>10} {share:>11.1%}")
        low = band.max_distance


if __name__ == "__main__":
    main()
