"""Opt-out: a person removes their face from the index, and it never comes back.

A person's opt-out is one record holding the descriptors of the faces in their photos (1-10;
never the photos), made by every registered face model (`OptOutVector`, one set per model:
faces/templates.py); what filters faces reads the active model's set only, so a model switch
(`facetrail reembed`) keeps every opt-out. Two radii, both from the face model's calibration (`radii`):

- blocking (the model's match threshold): no search returns a face within it of any opted-out
  descriptor, and a search whose query face is within it returns nothing (search/service.py);
  ingest does not store such a face. Faces already indexed within it are *hidden*: they stay
  in the database, are never returned or shown, their crops are deleted and the thumbnails of
  their images blurred, their images left out of copy search;
- deletion (strict: a false match about once in 10^8 pairs): faces within it are deleted at
  once, and so are faces within it of a deleted face, `chain` rounds deep (the person, not
  only the photo).

`record` keeps the request (in the answer's time, whatever the index holds); `apply` removes
and hides the matching faces, after the answer (`apply_pending`), so the answer takes the same
time whether or not the person was indexed. Counts are kept per day only (`OptOutDay`), and
shown for days that have ended (`daily_totals`), so no count tells whether one person was
indexed.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ..faces.registry import calibration, model_info
from ..faces.tail import distance_at_pair_rate
from ..images.previews import blur_faces
from ..index import VectorIndex
from ..store import Face, Image, OptOut
from ..store.media import MediaStore
from ..store.models import OptOutDay, OptOutVector
from . import audit
from .actors import DATA_SUBJECT, Actor

# Neighbours asked for per descriptor at first; four times more while they all fall inside the radius.
ROUND = 256
# Rows per IN (...) list.
CHUNK = 500
# Who may see the daily opt-out totals (besides the local operator, who holds the database).
COUNTS_ROLES = frozenset({"admin", "auditor"})
# Days of daily totals shown.
DAYS_SHOWN = 90


@dataclass(frozen=True)
class Radii:
    """The two opt-out radii of a face model (descriptor distances), and how far deletion chains.

    block: no search returns a face within it of an opted-out descriptor, and a query face
    within it gets no results (the model's match threshold). delete: faces within it are
    deleted at once, and faces within it of a deleted face, `chain` rounds deep (calibrated so
    that an opt-out deletes less than one other person's face in a 10 M-face index)."""

    block: float
    delete: float
    chain: int
    seeds: int  # at most this many descriptors (photos + deleted faces chained from) look for faces to delete


# Expected faces of other people an opt-out may delete in an index of this size: less than one.
SAFE_AT = 10_000_000
# Descriptors (photos and chained faces together) whose deletion radius one opt-out searches.
SEEDS = 18
# The false-match rate of a deletion radius: SEEDS x SAFE_AT x rate < 1.
SAFE_RATE = 1 / (SEEDS * SAFE_AT)
CHAIN = 1


def radii(settings) -> Radii:
    """The opt-out radii of the face model in use, from its calibration (faces/registry.py): the one
    place they are read. Blocking: the model's match threshold. Deletion: the radius measured for
    the model, else the one where its fitted different-person tail reaches SAFE_RATE; never wider
    than the model's own deletion radius nor the blocking radius."""
    calibrated = calibration(settings)
    delete = calibrated.opt_out_radius or safe_radius(calibrated.tail, SAFE_RATE)
    delete = min(delete or calibrated.deletion_radius, calibrated.deletion_radius, calibrated.match_threshold)
    return Radii(block=calibrated.match_threshold, delete=delete, chain=CHAIN, seeds=SEEDS)


def safe_radius(tail, rate: float) -> float | None:
    """The distance below which a fraction `rate` of different-person pairs fall, from the model's
    fitted lower tail (faces/tail.py); None without a fitted tail."""
    return None if tail is None else float(distance_at_pair_rate(rate, tail))


@dataclass
class OptOutFilter:
    """The opted-out descriptors of one face model, to test that model's faces against."""

    vectors: np.ndarray  # N x the model's dim, float32 (every photo of every opt-out)
    threshold: float

    @classmethod
    def load(cls, session: Session, threshold: float, model: str) -> OptOutFilter:
        """Every opt-out's descriptors by `model` (an opt-out without them blocks nothing of this
        model's: a switch to it is refused while one exists, ingest/reembed.py)."""
        return cls(descriptors(session, model), threshold)

    def blocked(self, vectors: np.ndarray) -> np.ndarray:
        """A boolean per row of `vectors`: True if it matches an opt-out."""
        vectors = np.atleast_2d(np.asarray(vectors, np.float32))
        if not len(self.vectors) or not len(vectors):
            return np.zeros(len(vectors), bool)
        # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: one matrix product, whatever the number of opt-outs
        squared = ((vectors ** 2).sum(1)[:, None] + (self.vectors ** 2).sum(1)[None, :]
                   - 2 * vectors @ self.vectors.T)
        return (squared <= self.threshold ** 2 + 1e-6).any(axis=1)


class OptOutCache:
    """The opt-out filter of a long-lived process (the web app's searcher), loaded again only
    when the opt-outs changed (their count or highest id), so a search does not read them all."""

    def __init__(self, threshold: float, model: str) -> None:
        self.threshold, self.model = threshold, model
        self._held: tuple[tuple, OptOutFilter] | None = None  # (key, filter), replaced whole: threads share it

    def get(self, session: Session) -> OptOutFilter:
        key = tuple(session.execute(select(func.count(OptOutVector.opt_out_id), func.max(OptOutVector.opt_out_id))
                                    .where(OptOutVector.model == self.model)).one())
        held = self._held
        if held is None or held[0] != key:
            held = (key, OptOutFilter.load(session, self.threshold, self.model))
            self._held = held
        return held[1]  # the filter of the opt-outs this session sees, never another thread's


def descriptors(session: Session, model: str) -> np.ndarray:
    """Every opt-out's descriptors by `model`, one row per photo (N x the model's dim, float32)."""
    blobs = session.scalars(select(OptOutVector.embedding).where(OptOutVector.model == model)).all()
    return np.frombuffer(b"".join(blobs), np.float32).reshape(-1, model_info(model).dim).copy()


def record(session: Session, vectors: np.ndarray, contact: str | None, model: str,
           others: dict[str, np.ndarray] | None = None) -> OptOut:
    """Keep a person's opt-out in the caller's transaction, with its audit entry: `vectors`, their
    descriptors by `model` (one per photo; the model in use, which found a face in every photo),
    and `others`, those of other models (model -> rows: faces/templates.py), one set per model.
    From the commit on, no search returns a matching face; the faces themselves are removed by
    `apply` (after the answer)."""
    vectors = np.atleast_2d(np.asarray(vectors, np.float32))
    row = OptOut(created_at=datetime.now(UTC), embedding=vectors.tobytes(), contact=contact or None,
                 faces_removed=0, photos=len(vectors), model=model)
    session.add(row)
    session.flush()
    described = {**(others or {}), model: vectors}
    session.add_all(OptOutVector(opt_out_id=row.id, model=name, photos=len(rows),
                                 embedding=np.asarray(rows, np.float32).tobytes())
                    for name, rows in sorted(described.items()))
    audit.record(session, DATA_SUBJECT, "opt_out", photos=len(vectors), contact_given=bool(contact),
                 models=sorted(described))
    return row


def apply(session: Session, index: VectorIndex, media: MediaStore, opt_out: OptOut, radius: Radii, model: str,
          forget_images: Callable[[set[str]], object] = lambda sha256s: None) -> tuple[int, int]:
    """Delete the faces within the deletion radius of the opt-out (chained), hide those within the
    blocking radius; blur them in their images' thumbnails, delete their crops, leave their images
    out of copy search, and have `forget_images` drop every other copy of those images kept (their
    captures, by sha256). `model`: the index's, whose descriptors of the opt-out are used. In the
    caller's transaction; returns (deleted, hidden) for the day's totals."""
    blob = session.scalar(select(OptOutVector.embedding).where(OptOutVector.opt_out_id == opt_out.id,
                                                               OptOutVector.model == model))
    vectors = np.frombuffer(blob or b"", np.float32).reshape(-1, index.dim)
    near = within(index, vectors, radius.block)  # one search of the index for every photo
    doomed = reach(session, index, vectors, radius, near)  # and one per chaining round that finds faces
    hidden = set(near) - doomed
    forget_images(_blur_and_forget(session, media, doomed | hidden))
    for ids in _chunks(sorted(doomed)):
        session.execute(delete(Face).where(Face.id.in_(ids)))
    if doomed:
        index.remove(np.array(sorted(doomed), np.int64))
    opt_out.applied_at = datetime.now(UTC)
    _count_day(session, len(doomed), len(hidden))
    audit.record(session, None, "opt_out.apply", opt_out=opt_out.id)
    return len(doomed), len(hidden)


_applying = threading.Lock()  # one process applies one opt-out at a time


def apply_pending(db, index: VectorIndex, media: MediaStore, radius: Radii, model: str,
                  forget_images: Callable[[set[str]], object] = lambda sha256s: None) -> int:
    """Apply every opt-out not applied yet (the one just answered, or one a crash left pending),
    each in its own transaction, with its descriptors by `model` (the index's). Returns how many
    were applied."""
    applied = 0
    with _applying:
        while True:
            with db.session() as session, session.begin():
                pending = session.scalar(select(OptOut).where(OptOut.applied_at.is_(None)).order_by(OptOut.id)
                                         .limit(1).with_for_update(skip_locked=True))
                if pending is None:
                    break
                apply(session, index, media, pending, radius, model, forget_images)
            applied += 1
        if applied:
            index.save()
    return applied


def within(index: VectorIndex, vectors: np.ndarray, radius: float) -> dict[int, float]:
    """The indexed faces within `radius` of any of `vectors`: id -> smallest distance. One search of
    the index for all of them (another, with more neighbours, only for rows whose every neighbour
    fell inside)."""
    vectors = np.atleast_2d(np.asarray(vectors, np.float32))
    found: dict[int, float] = {}
    k = ROUND
    while len(vectors) and len(index):
        distances, ids = index.search(vectors, min(k, len(index)))
        full = []
        for row, (row_distances, row_ids) in enumerate(zip(distances, ids)):
            hits = [(int(i), float(d)) for i, d in zip(row_ids, row_distances) if i >= 0 and d <= radius]
            for face_id, distance in hits:
                found[face_id] = min(distance, found.get(face_id, distance))
            if len(hits) == k:
                full.append(row)
        if not full or k >= len(index):
            break
        vectors, k = vectors[full], k * 4
    return found


def reach(session: Session, index: VectorIndex, vectors: np.ndarray, radius: Radii,
          near: dict[int, float] | None = None) -> set[int]:
    """The faces an opt-out with these descriptors deletes: those within the deletion radius of
    them, and those within it of a face found so, `radius.chain` rounds deep, the closest first,
    until `radius.seeds` descriptors (photos included) have been looked around. `near`: the faces
    within the blocking radius of `vectors`, if already known (`within`)."""
    near = within(index, vectors, radius.delete) if near is None else near
    found = {face_id: distance for face_id, distance in near.items() if distance <= radius.delete}
    reached, frontier = set(found), set(found)
    budget = radius.seeds - len(np.atleast_2d(vectors))
    for _ in range(radius.chain):
        frontier = set(sorted(frontier, key=lambda f: found[f])[:max(budget, 0)])
        if not frontier:
            break
        budget -= len(frontier)
        blobs = [blob for ids in _chunks(sorted(frontier))
                 for blob in session.scalars(select(Face.embedding).where(Face.id.in_(ids)))]
        found = within(index, np.frombuffer(b"".join(blobs), np.float32).reshape(-1, index.dim), radius.delete)
        frontier = set(found) - reached
        reached |= frontier
    return reached


def _blur_and_forget(session: Session, media: MediaStore, face_ids: set[int]) -> set[str]:
    """The faces' crops deleted, their boxes blurred in their images' thumbnails, their images'
    copy hashes cleared (copy search cannot lead to them); returns the images' sha256."""
    boxes: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
    images: dict[int, Image] = {}
    for ids in _chunks(sorted(face_ids)):
        for face, image in session.execute(select(Face, Image).join(Image, Image.id == Face.image_id)
                                           .where(Face.id.in_(ids))):
            boxes[image.id].append(face.box)
            images[image.id] = image
            media.crop_path(image.sha256, face.idx).unlink(missing_ok=True)
    for image_id, image in images.items():
        blur_thumbnail(media, image.sha256, (image.width, image.height), boxes[image_id])
    for ids in _chunks(sorted(images)):
        session.execute(update(Image).where(Image.id.in_(ids)).values(copy_hash=None))
    return {image.sha256 for image in images.values()}


def blur_thumbnail(media: MediaStore, sha256: str, size: tuple[int, int], boxes: list) -> None:
    """Re-render a stored thumbnail with these face boxes (in image pixels) blurred."""
    path = media.thumb_path(sha256)
    if boxes and path.is_file():
        media.save(sha256, blur_faces(path.read_bytes(), size, boxes), [])


def _count_day(session: Session, removed: int, hidden: int) -> None:
    """Add one opt-out and its faces to today's totals (the only counts kept)."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(OptOutDay).values(day=day, opt_outs=1, faces_removed=removed, faces_hidden=hidden)
    session.execute(statement.on_conflict_do_update(index_elements=[OptOutDay.day], set_={
        "opt_outs": OptOutDay.opt_outs + 1,
        "faces_removed": OptOutDay.faces_removed + removed,
        "faces_hidden": OptOutDay.faces_hidden + hidden,
    }))


def may_see_counts(actor: Actor | None) -> bool:
    """Opt-out totals are for admins and auditors (and the local operator: `None`)."""
    return actor is None or actor.role in COUNTS_ROLES


def daily_totals(session: Session, today: datetime | None = None) -> dict:
    """What admins and auditors may see: totals per day, for days that have ended (today's total
    would move with one opt-out), and their sum. Counts only, never faces."""
    today = (today or datetime.now(UTC)).strftime("%Y-%m-%d")
    first = (datetime.now(UTC) - timedelta(days=DAYS_SHOWN)).strftime("%Y-%m-%d")
    rows = session.scalars(select(OptOutDay).where(OptOutDay.day < today).order_by(OptOutDay.day)).all()
    return {
        "opt_outs": sum(r.opt_outs for r in rows),
        "faces_removed": sum(r.faces_removed for r in rows),
        "faces_hidden": sum(r.faces_hidden for r in rows),
        "through": rows[-1].day if rows else None,
        "days": [{"day": r.day, "opt_outs": r.opt_outs, "faces_removed": r.faces_removed,
                  "faces_hidden": r.faces_hidden} for r in rows if r.day >= first],
    }


def removed_today(session: Session) -> int:
    """Faces opt-outs deleted today (counts of faces shown to users add them back until the day ends)."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    return session.scalar(select(OptOutDay.faces_removed).where(OptOutDay.day == day)) or 0


def monthly_totals(session: Session, start: str, end: str) -> dict[str, dict[str, int]]:
    """Totals per month ("YYYY-MM") of the days in [start, end] ("YYYY-MM-DD") that have ended, for
    the transparency report."""
    months: dict[str, dict[str, int]] = {}
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    for row in session.scalars(select(OptOutDay).where(OptOutDay.day >= start, OptOutDay.day <= end,
                                                       OptOutDay.day < today).order_by(OptOutDay.day)):
        month = months.setdefault(row.day[:7], {"opt_outs": 0, "faces_removed": 0, "faces_hidden": 0})
        month["opt_outs"] += row.opt_outs
        month["faces_removed"] += row.faces_removed
        month["faces_hidden"] += row.faces_hidden
    return months


def counts(session: Session) -> dict:
    """The daily totals (kept for callers of the earlier name)."""
    return daily_totals(session)


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[at:at + CHUNK] for at in range(0, len(ids), CHUNK)]
