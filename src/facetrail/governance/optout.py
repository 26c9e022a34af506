"""Opt-out: a person removes their face from the index, and it never comes back.

Only the descriptor of the face in the photo they send is kept (never the photo). At once,
every indexed face within the match threshold is deleted (database, vector index, crops);
ingest drops matching faces before storing them; and search filters results against the
opt-outs as a last guard, so a face that slipped in between (an ingest running at the same
moment) is still never returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ..index import VectorIndex
from ..store import Face, Image, OptOut
from ..store.media import MediaStore
from . import audit
from .actors import DATA_SUBJECT

# How many neighbours to inspect per opt-out when removing faces; more are removed in
# further rounds until none within the threshold remain.
ROUND = 256


@dataclass
class OptOutFilter:
    """The opted-out descriptors, to test faces against."""

    vectors: np.ndarray  # N x 128 float32
    threshold: float

    @classmethod
    def load(cls, session: Session, threshold: float) -> OptOutFilter:
        blobs = session.scalars(select(OptOut.embedding)).all()
        vectors = np.frombuffer(b"".join(blobs), np.float32).reshape(-1, 128) if blobs else np.zeros((0, 128))
        return cls(vectors.astype(np.float32), threshold)

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

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._held: tuple[tuple, OptOutFilter] | None = None  # (key, filter), replaced whole: threads share it

    def get(self, session: Session) -> OptOutFilter:
        key = tuple(session.execute(select(func.count(OptOut.id), func.max(OptOut.id))).one())
        held = self._held
        if held is None or held[0] != key:
            held = (key, OptOutFilter.load(session, self.threshold))
            self._held = held
        return held[1]  # the filter of the opt-outs this session sees, never another thread's


def opt_out(
    session: Session,
    index: VectorIndex,
    media: MediaStore,
    embedding: np.ndarray,
    threshold: float,
    contact: str | None,
) -> int:
    """Record an opt-out and delete every matching face, in the caller's transaction.
    Returns how many faces were removed (for the record; never shown to the requester)."""
    vector = np.asarray(embedding, np.float32)
    removed = 0
    while True:
        distances, ids = index.search(vector, ROUND)
        hits = [int(i) for i, d in zip(ids[0], distances[0]) if i >= 0 and d <= threshold]
        if not hits:
            break
        rows = session.execute(
            select(Face.id, Face.idx, Image.sha256).join(Image, Image.id == Face.image_id).where(Face.id.in_(hits))
        ).all()
        session.execute(delete(Face).where(Face.id.in_(hits)))
        # copy search must not lead to the person's photos either
        session.execute(update(Image).where(Image.sha256.in_({sha for _, _, sha in rows})).values(copy_hash=None))
        index.remove(np.array(hits, np.int64))
        for _, idx, sha in rows:
            media.crop_path(sha, idx).unlink(missing_ok=True)
        removed += len(hits)
        if len(hits) < ROUND:
            break
    session.add(
        OptOut(created_at=datetime.now(UTC), embedding=vector.tobytes(), contact=contact or None, faces_removed=removed)
    )
    audit.record(session, DATA_SUBJECT, "opt_out", faces_removed=removed, contact_given=bool(contact))
    return removed


def counts(session: Session) -> dict:
    """What admins may see: counts, never faces."""
    return {
        "opt_outs": session.scalar(select(func.count()).select_from(OptOut)) or 0,
        "faces_removed": session.scalar(select(func.coalesce(func.sum(OptOut.faces_removed), 0))) or 0,
    }
