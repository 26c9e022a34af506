"""Whole-search benchmark: upload a photo, get results, at 1 M faces (target: 0.5 s).

    .venv/bin/python bench/whole_search.py [--faces 1000000] [--queries 30] [--keep]
                                           [--data-dir DIR] [--database-url URL]
                                           [--upload-side PX] [--profile FILE]

1. Builds a data folder (a temporary one, or --data-dir) whose database (SQLite in the folder, or
   --database-url, e.g. PostgreSQL) holds --faces faces:
   * the dev photos (../shared/data/faces/dev, ingested in place, by path) through the real
     pipeline, so real images, faces, crops and a folder source exist;
   * synthetic images, faces, locations and page appearances (a web-archive source) bulk
     inserted with SQLAlchemy Core. Descriptors come from the generator of bench/search.py,
     calibrated on the dev faces just ingested (identities as clusters in dlib's descriptor
     subspace, log-normal photos per identity). Each labelled dev person also gets ~20 synthetic
     photos, so a search for them fills its top 10 as at scale. Images hold 1-6 faces; each is
     shown on 1-2 pages of ~2000 hosts. --opt-outs opt-out descriptors (default 1000, placed
     where they match no face, see Generator.opt_outs) are stored too;
   * the vector index, built the way facetrail builds it: `open_index` (sync from the database;
     above exact_limit, 200k by default, the compressed structure is trained).
   With --data-dir, a folder that already holds >= --faces faces is reused as it is (a smaller
   one is topped up).
2. Times whole searches as a user meets them, --queries times (default 30), each with a different
   dev photo (labelled people, round robin; --upload-side N resizes them to a long side of N px
   first, e.g. 4032 for a phone photo), by an investigator (approval policy "review"):
   (a) in-process `Searcher.search`, broken down into decode + detect + embed (`faces_in`), the
       index search, and the rest (rate-limit check, repeat-subject check, result rows, opt-out
       filter, appearances, confirmations, audit entry, approval, commit);
   (b) `POST /api/v1/search` through FastAPI's TestClient (the app in this process, bearer
       token; multipart upload, authentication, JSON). No network hop is included.
   One warm-up search of each kind is made first and not counted. Rate limits and repeat-subject
   holds are raised (FACETRAIL_SEARCH_LIMITS, FACETRAIL_REPEAT_SUBJECT_COUNT, as in the tests),
   so no search is refused or held.
Prints p50 / p95 / max of each, the faces in the index and its kind, and PASS if the p95 of the
HTTP search (the whole search) is within 0.5 s. --profile FILE writes a cProfile of the
in-process searches and prints the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import hashlib
import importlib.util
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

# As in tests/conftest.py: one user searches far more often, and the same people more often,
# than the limits allow; those rules have their own tests. Set before Settings is read.
os.environ["FACETRAIL_SEARCH_LIMITS"] = '{"investigator": {"hour": 100000}, "supervisor": {"hour": 100000}}'
os.environ["FACETRAIL_REPEAT_SUBJECT_COUNT"] = "100000"
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")

import numpy as np
from sqlalchemy import event, func, insert, select, text

from facetrail.config import Settings
from facetrail.governance.actors import Actor
from facetrail.store import Database, Face, Image, Location, Source, User

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEV = ROOT.parent / "shared" / "data" / "faces" / "dev"
TARGET = 0.5  # seconds, upload -> results
BENCH_ADMIN = Actor("bench", "admin", "bench")
BENCH_SUPERVISOR = Actor("bench", "supervisor", "bench")
INVESTIGATOR = "bench-investigator"
ARCHIVE = "bench-archive"
LEGAL_BASIS = "synthetic benchmark data and labelled test photographs, used with permission"
CASE = "BENCH-1"
FORM = {"purpose": "source-verification", "justification": "whole-search benchmark", "case_ref": CASE}
CHUNK = 50_000  # synthetic faces per transaction
PER_DEV_PERSON = 20  # synthetic photos of each labelled dev person


def _search_bench():
    """bench/search.py (its calibrated descriptor generator), loaded under its own name."""
    spec = importlib.util.spec_from_file_location("_facetrail_search_bench", HERE / "search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pct(values, p) -> float:
    return float(np.percentile(np.asarray(values, float), p)) if len(values) else float("nan")


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 10 else f"{seconds:.2f} s"


# --------------------------------------------------------------------------- build


def manifest() -> dict[str, str]:
    with (DEV / "manifest.csv").open() as handle:
        return {row["path"]: row["identity"] for row in csv.DictReader(handle)}


def dev_faces(db: Database) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors and labels of the ingested dev faces, labelled as bench/search.py does: the
    largest face of a photo is its person, the others "none"."""
    labels_of = manifest()
    with db.session() as session:
        rows = session.execute(
            select(Face.id, Face.idx, Face.embedding, Location.location)
            .join(Location, Location.image_id == Face.image_id)
            .join(Source, Source.id == Location.source_id)
            .where(Source.kind == "folder")
            .order_by(Face.id, Location.id)
        ).all()
    vectors, labels, seen = [], [], set()
    for face_id, idx, blob, location in rows:
        if face_id in seen:  # the same image at two paths
            continue
        seen.add(face_id)
        try:
            rel = Path(location).resolve().relative_to(DEV.resolve()).as_posix()
        except ValueError:
            continue
        vectors.append(np.frombuffer(blob, np.float32))
        labels.append(labels_of.get(rel, "unknown") if idx == 0 else "none")
    return np.array(vectors, np.float32), np.array(labels)


def ingest_dev(settings: Settings, db: Database, index) -> None:
    from facetrail.ingest import Ingestor, walk
    from facetrail.ingest.sources import folder_source

    with db.session() as session, session.begin():
        source = folder_source(session, BENCH_ADMIN, [DEV], LEGAL_BASIS)
    t0 = time.perf_counter()
    summary = Ingestor(settings, db, index, source).run(walk([DEV]))
    print(f"  dev photos ingested in {fmt_s(time.perf_counter() - t0)}: {summary.images} images, "
          f"{summary.faces} faces", flush=True)


def archive_source(db: Database) -> int:
    from facetrail.ingest.sources import SourceSpec, add_source

    with db.session() as session, session.begin():
        found = session.scalar(select(Source.id).where(Source.name == ARCHIVE))
        if found is not None:
            return found
        return add_source(session, BENCH_ADMIN, SourceSpec(ARCHIVE, "warc", LEGAL_BASIS)).id


class Generator:
    """Synthetic faces: new identities (bench/search.py's generator) plus photos of the dev people."""

    def __init__(self, sb, cal, n_faces: int, seed: int) -> None:
        self.sb, self.cal = sb, cal
        self.rng = np.random.default_rng(seed)
        f32 = np.float32
        self.basis, self.mean = cal.basis.astype(f32), cal.mean.astype(f32)
        self.within = cal.within.T.astype(f32)
        # the labelled dev people: their centre in the generator's subspace
        keep = ~np.isin(cal.dev_labels, ["none", "unknown"])
        names = sorted(set(cal.dev_labels[keep]))
        dev_centres = np.array([cal.dev_vectors[cal.dev_labels == n].mean(0) for n in names], np.float64)
        dev_centres = ((dev_centres - cal.mean) @ cal.basis.T).astype(f32)
        n_dev = min(n_faces // 2, len(names) * PER_DEV_PERSON)
        n_new = n_faces - n_dev
        sizes = []
        total = 0
        while total < n_new:
            s = np.clip(np.ceil(self.rng.lognormal(np.log(3.0), 0.9, 100_000)), 1, 500).astype(np.int64)
            sizes.append(s)
            total += int(s.sum())
        sizes = np.concatenate(sizes)
        sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_new) + 1]
        sizes[-1] -= int(sizes.sum()) - n_new
        n_ids = len(sizes)
        centres = self.rng.standard_normal((n_ids, sb.SUBSPACE), dtype=f32) @ cal.between.T.astype(f32)
        self.centres = np.concatenate([dev_centres, centres]).astype(f32)
        self.spreads = np.concatenate([np.ones(len(names), f32),
                                       self.rng.lognormal(0.0, 0.15, n_ids).astype(f32)])
        dev_who = self.rng.integers(0, len(names), n_dev) if len(names) else np.zeros(0, np.int64)
        self.identity = np.concatenate([dev_who, len(names) + np.repeat(np.arange(n_ids), sizes)])
        self.rng.shuffle(self.identity)
        self.n_identities = n_ids

    def vectors(self, start: int, stop: int) -> np.ndarray:
        who = self.identity[start:stop]
        z = self.rng.standard_normal((len(who), self.sb.SUBSPACE), dtype=np.float32) @ self.within
        z *= self.spreads[who, None]
        z += self.centres[who]
        return (z @ self.basis + self.mean).astype(np.float32)

    def opt_outs(self, n: int) -> np.ndarray:
        """Opt-out descriptors that match no gallery face. Real opt-outs have had their matches
        deleted (`optout.opt_out`); and at the 0.6 threshold, random people's descriptors would
        hide most results (~0.3 % of different-person dev pairs are within 0.6, so 1000 opt-outs
        match most faces). Three times as far from the mean as a face, they cost the same to load
        and compare, and hide nothing."""
        z = self.rng.standard_normal((n, self.sb.SUBSPACE), dtype=np.float32) @ self.cal.between.T.astype(np.float32)
        z += (self.rng.standard_normal((n, self.sb.SUBSPACE), dtype=np.float32) @ self.within)
        return (3.0 * z @ self.basis + self.mean).astype(np.float32)


def bulk_engine(url: str):
    from facetrail.store.db import make_engine

    engine = make_engine(url)
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _fast(dbapi_connection, _record):  # this benchmark's own build connection only
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute("PRAGMA cache_size=-262144")
            cursor.execute("PRAGMA temp_store=MEMORY")
            cursor.close()
    return engine


def insert_synthetic(settings: Settings, db: Database, n_faces: int, n_opt_outs: int, seed: int) -> None:
    from facetrail.ingest.pipeline import appearance_key
    from facetrail.store import Appearance, OptOut

    sb = _search_bench()
    vectors, labels = dev_faces(db)
    if len(vectors) < 50:
        raise SystemExit(f"only {len(vectors)} dev faces in the database: too few to calibrate the generator")
    cal = sb.Calibration(vectors, labels)
    t0 = time.perf_counter()
    gen = Generator(sb, cal, n_faces, seed)
    print(f"  generator calibrated on {len(vectors)} dev faces; {gen.n_identities:,} new identities "
          f"({fmt_s(time.perf_counter() - t0)})", flush=True)
    source_id = archive_source(db)
    with db.session() as session:
        detector, model = session.execute(select(Face.detector, Face.model).limit(1)).one()
        image_id = (session.scalar(select(func.max(Image.id))) or 0) + 1
        face_id = (session.scalar(select(func.max(Face.id))) or 0) + 1

    rng = np.random.default_rng(seed + 1)
    now = datetime.now(UTC)
    stamps = [now - timedelta(seconds=int(s)) for s in rng.integers(0, 3 * 365 * 86400, 4096)]
    hosts = [f"www.site{h}.example" for h in range(2000)]
    engine = bulk_engine(settings.db_url)
    t0 = time.perf_counter()
    done = 0
    try:
        while done < n_faces:
            n = min(CHUNK, n_faces - done)
            emb = gen.vectors(done, done + n)
            # images of 1-6 faces (mean ~1.3)
            per_image = np.clip(rng.geometric(0.75, n), 1, 6)
            per_image = per_image[: np.searchsorted(np.cumsum(per_image), n) + 1]
            per_image[-1] -= int(per_image.sum()) - n
            n_img = len(per_image)
            img_ids = np.arange(image_id, image_id + n_img)
            widths = rng.integers(320, 2400, n_img)
            heights = (widths * rng.uniform(0.56, 1.5, n_img)).astype(np.int64)
            sizes = (widths * heights * rng.uniform(0.08, 0.3, n_img)).astype(np.int64)
            first = rng.integers(0, len(stamps), n_img)
            last = rng.integers(0, len(stamps), n_img)
            copy_hash = rng.integers(-(2**63), 2**63 - 1, n_img, dtype=np.int64)
            host = rng.integers(0, len(hosts), n_img)
            urls = [f"https://img.{hosts[h]}/photos/{i}.jpg" for h, i in zip(host.tolist(), img_ids.tolist())]
            seen = [(stamps[min(a, b)], stamps[max(a, b)]) for a, b in zip(first.tolist(), last.tolist())]
            # stamps are newest first: the larger index is the older time
            images = [
                {"id": i, "sha256": hashlib.sha256(f"facetrail-bench-{i}".encode()).hexdigest(), "bytes": b,
                 "width": w, "height": h, "format": "jpeg", "copy_hash": c, "first_seen": s[1], "last_seen": s[0]}
                for i, b, w, h, c, s in zip(img_ids.tolist(), sizes.tolist(), widths.tolist(), heights.tolist(),
                                            copy_hash.tolist(), seen)
            ]
            locations = [
                {"source_id": source_id, "location": u, "image_id": i, "size": b, "mtime_ns": 0, "error": None,
                 "status": 200, "gone": False, "first_seen": s[1], "last_seen": s[0]}
                for i, u, b, s in zip(img_ids.tolist(), urls, sizes.tolist(), seen)
            ]
            appearances = []
            second = rng.random(n_img) < 0.1
            for k, (i, u, h, s) in enumerate(zip(img_ids.tolist(), urls, host.tolist(), seen)):
                pages = [f"https://{hosts[h]}/articles/{i // 4}"]
                if second[k]:
                    pages.append(f"https://{hosts[(h * 7 + 1) % len(hosts)]}/gallery/{i // 16}")
                for page in pages:
                    appearances.append(
                        {"source_id": source_id, "key": appearance_key(page, u), "page_url": page,
                         "canonical_url": None, "page_title": f"Article {i // 4} - {hosts[h]}", "image_url": u,
                         "alt": "", "status": 200, "gone": False, "first_seen": s[1], "last_seen": s[0]})
            owner = np.repeat(img_ids, per_image)
            idx = np.concatenate([np.arange(c) for c in per_image])
            side = rng.integers(40, 400, n)
            left = rng.integers(0, 300, n)
            top = rng.integers(0, 300, n)
            score = rng.uniform(0.0, 2.5, n)
            faces = [
                {"id": f, "image_id": i, "idx": x, "left": lf, "top": tp, "right": lf + sd, "bottom": tp + sd,
                 "score": sc, "detector": detector,
                 "landmarks": [[lf + sd * 3 // 10, tp + sd * 4 // 10], [lf + sd * 7 // 10, tp + sd * 4 // 10],
                               [lf + sd // 2, tp + sd * 6 // 10], [lf + sd * 35 // 100, tp + sd * 8 // 10],
                               [lf + sd * 65 // 100, tp + sd * 8 // 10]],
                 "model": model, "embedding": e.tobytes()}
                for f, i, x, lf, tp, sd, sc, e in zip(range(face_id, face_id + n), owner.tolist(), idx.tolist(),
                                                      left.tolist(), top.tolist(), side.tolist(), score.tolist(), emb)
            ]
            with engine.begin() as conn:
                conn.execute(insert(Image), images)
                conn.execute(insert(Face), faces)
                conn.execute(insert(Location), locations)
                conn.execute(insert(Appearance), appearances)
            image_id += n_img
            face_id += n
            done += n
            rate = done / (time.perf_counter() - t0)
            print(f"\r  synthetic faces inserted: {done:,}/{n_faces:,} ({rate:,.0f}/s)", end="", flush=True)
        print(flush=True)
        with engine.begin() as conn:
            if n_opt_outs:
                out = gen.opt_outs(n_opt_outs)
                conn.execute(insert(OptOut), [
                    {"created_at": now, "embedding": v.tobytes(), "contact": None, "faces_removed": 0} for v in out])
            if engine.dialect.name == "postgresql":  # ids were given explicitly: move the sequences on
                for table in ("images", "faces"):
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                      f"(SELECT max(id) FROM {table}))"))
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()


def face_count(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Face)) or 0


def build(settings: Settings, db: Database, args):
    """Fill the database up to args.faces faces and bring the index in step; returns timings."""
    from facetrail.index import open_index

    timings = {}
    t_all = time.perf_counter()
    have = face_count(db)
    if have >= args.faces:
        print(f"Data folder holds {have:,} faces already (>= {args.faces:,}): not building.", flush=True)
    else:
        print(f"Building {args.faces:,} faces in {settings.data_dir} ({db.url.split(':')[0]})...", flush=True)
        with db.session() as session:
            dev_done = session.scalar(
                select(func.count()).select_from(Location).join(Source, Source.id == Location.source_id)
                .where(Source.kind == "folder", Location.image_id.is_not(None)))
        if not dev_done:
            t0 = time.perf_counter()
            index = open_index(settings, db)
            ingest_dev(settings, db, index)
            timings["dev ingest"] = time.perf_counter() - t0
            have = face_count(db)
        with db.session() as session:
            fresh = not session.scalar(select(func.count()).select_from(Source).where(Source.name == ARCHIVE))
        t0 = time.perf_counter()
        insert_synthetic(settings, db, args.faces - have, args.opt_outs if fresh else 0, seed=args.faces + have)
        timings["synthetic insert"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = open_index(settings, db)  # sync from the database; trains the compressed index when due
    if index.needs_training:
        index.train_now()
    timings["index (open_index: sync + training)"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    status = index.status() if index.trainable else {}
    print(f"Index: {len(index):,} faces, kind {index.kind}"
          + (f", nlist {status.get('nlist')}, nprobe {status.get('nprobe')}, "
             f"{status.get('bytes_per_face', 0):.0f} B/face in RAM" if status else ""), flush=True)
    for name, seconds in timings.items():
        print(f"  {name:<38} {fmt_s(seconds)}", flush=True)
    return timings, index


# --------------------------------------------------------------------------- search


def investigator_token(db: Database) -> tuple[User, str]:
    from datetime import date, timedelta

    from facetrail.governance import cases
    from facetrail.governance.accounts import create_token, create_user
    from facetrail.store.models import Case

    with db.session() as session, session.begin():
        user = session.scalar(select(User).where(User.username == INVESTIGATOR))
        if user is None:
            user, _ = create_user(session, BENCH_ADMIN, INVESTIGATOR, "investigator")
        _, secret = create_token(session, BENCH_ADMIN, INVESTIGATOR, "whole-search bench", days=1)
        if session.scalar(select(Case.id).where(Case.ref == CASE)) is None:  # searches name an open case
            cases.open_case(session, BENCH_SUPERVISOR, ref=CASE, title="whole-search benchmark",
                            purpose=FORM["purpose"], purposes=[FORM["purpose"]],
                            authorisation=cases.Authorisation("benchmark", "BENCH", date.today()),
                            expires_on=date.today() + timedelta(days=30))
        if INVESTIGATOR not in cases.members(session, cases.get(session, CASE)):
            cases.add_member(session, BENCH_SUPERVISOR, CASE, INVESTIGATOR)
    return user, secret


def query_photos(db: Database, n: int, upload_side: int = 0) -> list[tuple[str, bytes]]:
    """n dev photos in which the pipeline found a face, labelled people round robin. With
    `upload_side`, each becomes a phone-like photo (most dev photos are small crops, long side
    150 px median): a 4:3 JPEG (quality 90) of that long side, the photo filling a third of it,
    on a blurred enlargement of itself."""
    labels_of = manifest()
    with db.session() as session:
        rows = session.execute(
            select(Location.location).join(Source, Source.id == Location.source_id)
            .join(Face, Face.image_id == Location.image_id)
            .where(Source.kind == "folder", Face.idx == 0).order_by(Location.location)
        ).scalars().all()
    by_person: dict[str, list[str]] = defaultdict(list)
    for location in rows:
        try:
            rel = Path(location).resolve().relative_to(DEV.resolve()).as_posix()
        except ValueError:
            continue
        person = labels_of.get(rel, "unknown")
        if person not in ("none", "unknown"):
            by_person[person].append(location)
    order = []
    people = sorted(by_person)
    while len(order) < n and any(by_person.values()):
        for person in people:
            if by_person[person] and len(order) < n:
                order.append(by_person[person].pop(0))
    if len(order) < n:
        raise SystemExit(f"only {len(order)} labelled dev photos with a face; ask for fewer --queries")
    if not upload_side:
        return [(f"{Path(p).parent.name}-{Path(p).name}", Path(p).read_bytes()) for p in order]
    from PIL import Image as PILImage
    from PIL import ImageFilter, ImageOps

    photos = []
    size = (upload_side, upload_side * 3 // 4)
    for path in order:
        with PILImage.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
        canvas = ImageOps.fit(im, size, PILImage.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(upload_side / 100))
        scale = size[1] / 3 / max(im.size)
        im = im.resize((round(im.width * scale), round(im.height * scale)), PILImage.Resampling.LANCZOS)
        canvas.paste(im, ((size[0] - im.width) // 2, (size[1] - im.height) // 3))
        out = io.BytesIO()
        canvas.save(out, "JPEG", quality=90)
        photos.append((f"{Path(path).parent.name}-{Path(path).stem}.jpg", out.getvalue()))
    return photos


class Stopwatch:
    """Wraps functions on the search path to time their share of each search (this process only)."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self._patched: list[tuple[object, str, object]] = []

    def wrap(self, owner, name: str, label: str) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        is_classmethod = isinstance(original, classmethod)
        func_ = original.__func__ if is_classmethod else original
        current = self.current

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return func_(*a, **k)
            finally:
                current[label] += time.perf_counter() - t0

        setattr(owner, name, classmethod(timed) if is_classmethod else timed)
        self._patched.append((owner, name, original))

    def take(self) -> dict[str, float]:
        taken = dict(self.current)
        self.current.clear()
        return taken

    def restore(self) -> None:
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)
        self._patched.clear()


PARTS = [
    ("decode+detect+embed", "faces_in"),
    ("index search", "index.search"),
    ("rate-limit check", "rate_limits.check"),
    ("repeat-subject check", "retention.repeat_subject_note"),
    ("result rows (faces, images, locations)", "_matches.rows"),
    ("opt-out load", "OptOutFilter.load"),
    ("appearances", "appearances_of"),
    ("confirmations", "verification.confirmations"),
    ("audit entry", "audit.record"),
    ("query descriptor kept", "retention.remember"),
    ("approval opened", "approvals.open_approval"),
]


def instrument(searcher) -> Stopwatch:
    from facetrail.governance import approvals, audit, retention, verification
    from facetrail.governance import limits as rate_limits
    from facetrail.governance.optout import OptOutFilter
    from facetrail.search import service

    watch = Stopwatch()
    watch.wrap(searcher, "faces_in", "faces_in")
    watch.wrap(searcher.index, "search", "index.search")
    watch.wrap(rate_limits, "check", "rate_limits.check")
    watch.wrap(retention, "repeat_subject_note", "retention.repeat_subject_note")
    watch.wrap(retention, "remember", "retention.remember")
    watch.wrap(OptOutFilter, "load", "OptOutFilter.load")
    watch.wrap(service, "appearances_of", "appearances_of")
    watch.wrap(verification, "confirmations", "verification.confirmations")
    watch.wrap(audit, "record", "audit.record")
    watch.wrap(approvals, "open_approval", "approvals.open_approval")
    return watch


def report(title: str, totals: list[float], parts: list[dict[str, float]] | None = None) -> None:
    print(f"\n{title}  ({len(totals)} searches)")
    print(f"  {'':<42}{'p50':>9}{'p95':>9}{'max':>9}")

    def line(name, values):
        print(f"  {name:<42}" + "".join(f"{v * 1e3:>7.1f}ms" for v in (pct(values, 50), pct(values, 95), max(values))))

    line("whole search", totals)
    if parts:
        for name, key in PARTS:
            values = [p.get(key, 0.0) for p in parts]
            line("  " + name, values)
        rest = [t - p.get("faces_in", 0.0) - p.get("index.search", 0.0) for t, p in zip(totals, parts)]
        line("  all but decode/detect/embed and index", rest)
        other = [t - sum(p.get(k, 0.0) for _, k in PARTS) for t, p in zip(totals, parts)]
        line("  other (session, commit, Python)", other)


def search_in_process(settings, db, index, user, photos, args) -> tuple[list[float], list[dict], list[int]]:
    from facetrail.faces import load_engine
    from facetrail.search import Searcher

    t0 = time.perf_counter()
    searcher = Searcher(settings, db, index, load_engine(settings))
    print(f"\nFace engine loaded in {fmt_s(time.perf_counter() - t0)}", flush=True)
    actor = Actor.of(user, "cli")
    original_matches = searcher._matches
    watch = instrument(searcher)

    def matches(session, hits, case_ref):  # the result rows: _matches less what it calls that is timed apart
        t0 = time.perf_counter()
        before = {k: watch.current.get(k, 0.0) for k in ("OptOutFilter.load", "appearances_of",
                                                         "verification.confirmations")}
        try:
            return original_matches(session, hits, case_ref)
        finally:
            inner = sum(watch.current.get(k, 0.0) - v for k, v in before.items())
            watch.current["_matches.rows"] += time.perf_counter() - t0 - inner

    searcher._matches = matches
    run = lambda photo: searcher.search(photo, actor=actor, **FORM)
    t0 = time.perf_counter()
    run(photos[-1][1])
    watch.take()
    print(f"Warm-up search (not counted): {(time.perf_counter() - t0) * 1e3:.0f} ms", flush=True)
    profiler = cProfile.Profile() if args.profile else None
    totals, parts, counts = [], [], []
    try:
        for _, photo in photos:
            if profiler:
                profiler.enable()
            t0 = time.perf_counter()
            result = run(photo)
            totals.append(time.perf_counter() - t0)
            if profiler:
                profiler.disable()
            parts.append(watch.take())
            counts.append(len(result.results))
            if result.error:
                print(f"  search error (timed all the same): {result.error}", flush=True)
    finally:
        watch.restore()
        searcher.__dict__.pop("_matches", None)
    if profiler:
        profiler.dump_stats(args.profile)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
        stats.print_stats(35)
        print(f"\ncProfile of the in-process searches (written to {args.profile}), by cumulative time:")
        print("\n".join(out.getvalue().splitlines()[:60]))
    return totals, parts, counts


def search_http(settings, token: str, photos) -> tuple[list[float], list[float], list[int], float, list[str]]:
    """Timed POSTs: (totals, time inside Searcher.search, results per search, app startup, errors)."""
    from fastapi.testclient import TestClient

    from facetrail.web import create_app

    headers = {"Authorization": f"Bearer {token}"}
    t0 = time.perf_counter()
    with TestClient(create_app(settings), headers=headers) as client:
        startup = time.perf_counter() - t0
        watch = Stopwatch()
        watch.wrap(client.app.state.searcher, "search", "search")

        def post(name, data):
            return client.post("/api/v1/search", files={"image": (name, data, "application/octet-stream")},
                               data=FORM)

        post(*photos[-1])
        watch.take()
        totals, inner, counts, errors = [], [], [], []
        for name, data in photos:
            t0 = time.perf_counter()
            response = post(name, data)
            totals.append(time.perf_counter() - t0)
            inner.append(watch.take().get("search", 0.0))
            if response.status_code == 200:
                counts.append(len(response.json()["results"]))
            else:  # e.g. 422 no_face: still a whole search, timed
                counts.append(0)
                errors.append(f"{name}: {response.status_code} {response.json().get('code')}")
        watch.restore()
    return totals, inner, counts, startup, errors


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=1_000_000, help="faces in the database (default 1,000,000)")
    parser.add_argument("--queries", type=int, default=30, help="searches timed per way (default 30)")
    parser.add_argument("--opt-outs", type=int, default=1000, help="opt-out descriptors stored (default 1000)")
    parser.add_argument("--data-dir", type=Path, help="data folder to build in or reuse (kept)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    parser.add_argument("--workers", type=int, default=2, help="ingest processes for the dev photos (default 2)")
    parser.add_argument("--upload-side", type=int, default=0,
                        help="make each query a phone-like JPEG of this long side (the dev photo filling a "
                             "third of it), e.g. 4032")
    parser.add_argument("--profile", help="write a cProfile of the in-process searches to this file")
    args = parser.parse_args()
    if not (DEV / "manifest.csv").is_file():
        raise SystemExit(f"dev photos not found at {DEV}")

    temporary = args.data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="facetrail-whole-search-")) if temporary else args.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir, database_url=args.database_url, workers=args.workers)
    db = Database(settings.db_url)
    try:
        timings, index = build(settings, db, args)
        user, token = investigator_token(db)
        photos = query_photos(db, args.queries, args.upload_side)
        sizes = [len(d) for _, d in photos]
        print(f"Queries: {len(photos)} dev photos" + (f" resized to {args.upload_side} px" if args.upload_side else "")
              + f", {min(sizes) // 1024}-{max(sizes) // 1024} KiB (median {int(np.median(sizes)) // 1024} KiB)",
              flush=True)

        totals, parts, counts = search_in_process(settings, db, index, user, photos, args)
        report("(a) in-process Searcher.search", totals, parts)
        print(f"  results per search: mean {np.mean(counts):.1f} (top_k {settings.top_k}, "
              f"threshold {settings.match_threshold})")

        http, http_inner, http_counts, startup, http_errors = search_http(settings, token, photos)
        report("(b) HTTP POST /api/v1/search (TestClient, in process)", http)
        print(f"  {'  Searcher.search':<42}" + "".join(
            f"{v * 1e3:>7.1f}ms" for v in (pct(http_inner, 50), pct(http_inner, 95), max(http_inner))))
        layer = [h - i for h, i in zip(http, http_inner)]
        print(f"  {'  HTTP layer (auth, multipart, JSON)':<42}" + "".join(
            f"{v * 1e3:>7.1f}ms" for v in (pct(layer, 50), pct(layer, 95), max(layer))))
        print(f"  app startup (maintenance, open_index sync, face engine): {fmt_s(startup)}; "
              f"results per search: mean {np.mean(http_counts):.1f}")
        if http_errors:
            print(f"  answers other than 200 (timed all the same): {len(http_errors)}: " + "; ".join(http_errors))

        faces = len(index)
        p95 = pct(http, 95)
        verdict = "PASS" if p95 <= TARGET else "FAIL"
        print(f"\nIndex: {faces:,} faces, kind {index.kind}; database: {db.url.split(':')[0]}")
        if timings:
            print(f"Build: {fmt_s(timings['total'])} ("
                  + ", ".join(f"{k} {fmt_s(v)}" for k, v in timings.items() if k != "total") + ")")
        print(f"Whole search (HTTP) p50 {pct(http, 50):.3f} s, p95 {p95:.3f} s, max {max(http):.3f} s; "
              f"in-process p50 {pct(totals, 50):.3f} s, p95 {pct(totals, 95):.3f} s")
        print(f"{verdict}: p95 of the whole search {'<=' if p95 <= TARGET else '>'} {TARGET} s at {faces:,} faces")
        index.close()
    finally:
        db.close()
        if temporary and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        elif temporary:
            print(f"Data folder kept: {data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
