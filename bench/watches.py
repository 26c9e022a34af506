"""Watch check cost per ingested face, with 10 and 1,000 active watches (issue 18, item 5).

    .venv/bin/python bench/watches.py [--cache FILE] [--photos 3] [--rounds 200] [--database-url URL]

What is timed is what ingest runs (governance/watches.py, called by ingest/pipeline.py once per
stored batch of up to STORE_BATCH images): `WatchChecker.check(face_ids, image_ids, vectors)`.

Data. The ingested faces are the real dev-set descriptors (bench/optout.py `descriptors`, dlib),
in batches of 32 faces (a full store batch of one-face photos) and of 1 face (a trickle, e.g. a
slow crawl). The watch templates are `--photos` descriptors each: dev descriptors of people held
out of the ingested set, each moved by a small random offset so that 1,000 watches are 1,000
distinct templates (the cost depends on their number, not their values). The watches live in a
real database (SQLite in a temporary folder unless --database-url), approved, under one open case.

Printed, per number of watches:
  * matrix: the in-memory check alone (`matches`: one matrix product), per face, median of rounds;
  * check: the whole call per face when nothing matches (the matrix plus the per-batch database
    reads: whether watches changed, whether withheld hits wait), for batches of 32 and of 1;
  * reload: loading the template matrix after a watch changed (once per change, not per batch).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from optout import descriptors  # noqa: E402

from facetrail.config import Settings  # noqa: E402
from facetrail.governance import cases, watches  # noqa: E402
from facetrail.governance.accounts import create_user  # noqa: E402
from facetrail.governance.actors import Actor  # noqa: E402
from facetrail.store import Database  # noqa: E402
from facetrail.store.models import Watch, WatchVector  # noqa: E402

HELD_OUT = 8  # people whose photos make the templates, not the ingested faces


def setup(db: Database, settings: Settings, templates: list[np.ndarray]) -> None:
    """Accounts, an open case, and one approved watch per template (rows written directly: the
    requests and approvals themselves are not what is timed)."""
    sue = Actor("sue", "supervisor", "bench")
    with db.session() as session, session.begin():
        create_user(session, None, "sue", "supervisor")
        owner, _ = create_user(session, None, "ivan", "investigator")
        case = cases.open_case(session, sue, ref="B-1", title="bench", purpose=settings.purposes[0],
                               purposes=settings.purposes, authorisation=cases.Authorisation("court", "B", date.today()),
                               expires_on=date.today() + timedelta(days=30), members=["ivan"])
        now = datetime.now(UTC)
        rows = [Watch(case_id=case.id, owner_id=owner.id, status=watches.APPROVED, days=30,
                      template=t.astype(np.float32).tobytes(), photos=len(t), photo_sha256=["0" * 64] * len(t),
                      model=settings.face_model, created_at=now, approved_by="sue", approved_at=now,
                      expires_at=now + timedelta(days=30), changed_at=now) for t in templates]
        session.add_all(rows)
        session.flush()
        session.add_all(WatchVector(watch_id=row.id, model=settings.face_model, embedding=row.template,
                                    photos=row.photos) for row in rows)  # what the checker reads


def timed(function, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, help="keep the dev descriptors here (.npz)")
    parser.add_argument("--photos", type=int, default=3, help="descriptors per watch (1-10)")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--database-url", help="default: SQLite in a temporary folder")
    args = parser.parse_args()
    who, vectors = descriptors(args.cache)
    people = sorted({w for w in who if not w.startswith("other-")})
    held = set(people[:HELD_OUT])
    pool = vectors[[i for i, w in enumerate(who) if w in held]]
    ingested = vectors[[i for i, w in enumerate(who) if w not in held]]
    rng = np.random.default_rng(0)
    print(f"ingested faces: {len(ingested)} dev descriptors; templates from {len(pool)} descriptors of "
          f"{HELD_OUT} held-out people, {args.photos} per watch")
    print(f"{'watches':>8} {'rows':>6} {'matrix/face (32)':>17} {'check/face (32)':>16} {'check/face (1)':>15} "
          f"{'reload':>9} {'false hits':>10}")
    from facetrail.faces.registry import model_info

    bands = model_info(Settings().face_model).calibration.bands
    bounds = [(f"{b.name} (<{b.max_distance})", b.max_distance) for b in bands if b.max_distance != float("inf")]
    rates: dict[int, dict[str, float]] = {}
    for count in (10, 1000):
        templates = [pool[rng.integers(0, len(pool), args.photos)]
                     + rng.normal(0, 0.01, (args.photos, pool.shape[1])).astype(np.float32) for _ in range(count)]
        with tempfile.TemporaryDirectory() as folder:
            settings = Settings(data_dir=Path(folder), **({"database_url": args.database_url}
                                                          if args.database_url else {}))
            db = Database(settings.db_url)
            setup(db, settings, templates)
            checker = watches.WatchChecker(settings, db)
            with db.session() as session:
                start = time.perf_counter()
                matrix = checker.templates(session)
                reload = time.perf_counter() - start
            batch = ingested[:32]
            per_face_matrix = timed(lambda: checker.matches(matrix, batch), args.rounds) / len(batch)
            hits = checker.matches(matrix, ingested)  # other people within the threshold: false alarms
            # the whole call, on faces that match no watch (a hit costs what a search's audit entry costs)
            hit_rows = {h[0] for h in hits}
            quiet = ingested[[r for r in range(len(ingested)) if r not in hit_rows][:32]]
            ids = list(range(1, len(quiet) + 1))
            per_face_check = timed(lambda: checker.check(ids, ids, quiet), max(20, args.rounds // 4)) / len(quiet)
            per_face_one = timed(lambda: checker.check([1], [1], quiet[:1]), max(20, args.rounds // 4))
            # how often a face of someone not watched comes within a band's bound of a watch
            near = np.sqrt(np.maximum(((ingested[:, None, None, :] - np.stack(templates)[None]) ** 2).sum(-1), 0)).min(-1)
            rates[count] = {name: float((near <= bound).mean()) for name, bound in bounds}
            with db.session() as session:
                rows = session.query(Watch).count()
            db.close()
        print(f"{count:>8} {rows * args.photos:>6} {per_face_matrix * 1e6:>14.1f} µs {per_face_check * 1e6:>13.1f} µs "
              f"{per_face_one * 1e3:>12.2f} ms {reload * 1e3:>6.1f} ms {len(hits):>10} ({len(quiet)} quiet)")
    print(f"false hits: (face, watch) pairs within the match threshold, of {len(ingested)} faces of people not "
          "watched; quiet: faces matching no watch, used for the check timings")
    print("share of (face of someone not watched, watch) pairs within each band's bound (template: nearest of its "
          "descriptors):")
    for count, shares in rates.items():
        print(f"  {count:>5} watches: " + ", ".join(f"{name} {share:.2%}" for name, share in shares.items()))


if __name__ == "__main__":
    main()
