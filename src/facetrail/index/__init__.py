"""Vector index: derived from the `faces` table, which stays the source of truth."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sqlalchemy import select

from ..config import Settings
from ..store import Database, Face
from .base import VectorIndex
from .faiss_index import FaissIndex

BATCH = 10_000


def index_path(settings: Settings):
    return settings.index_dir / "faces.faiss"


def sync(index: VectorIndex, db: Database, progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Make the index hold exactly the faces in the database. Returns (added, removed)."""
    with db.session() as session:
        db_ids = np.fromiter(session.scalars(select(Face.id)), dtype=np.int64)
    held = index.ids()
    stale = np.setdiff1d(held, db_ids, assume_unique=True)
    missing = np.setdiff1d(db_ids, held, assume_unique=True)
    removed = index.remove(stale)
    for start in range(0, len(missing), BATCH):
        chunk = missing[start : start + BATCH]
        with db.session() as session:
            rows = session.execute(select(Face.id, Face.embedding).where(Face.id.in_(chunk.tolist()))).all()
        index.add(
            np.array([r.id for r in rows], np.int64),
            np.frombuffer(b"".join(r.embedding for r in rows), np.float32).reshape(-1, index.dim),
        )
        if progress:
            progress(len(rows))
    if removed or len(missing):
        index.save()
    return len(missing), removed


def open_index(settings: Settings, db: Database) -> VectorIndex:
    """The index in the data folder, brought in step with the database."""
    index = FaissIndex(index_path(settings))
    sync(index, db)
    return index


def rebuild(settings: Settings, db: Database, progress: Callable[[int], None] | None = None) -> VectorIndex:
    """Throw the index away and build it again from the database."""
    path = index_path(settings)
    path.unlink(missing_ok=True)
    index = FaissIndex(path)
    sync(index, db, progress)
    index.save()
    return index


__all__ = ["FaissIndex", "VectorIndex", "open_index", "rebuild", "sync"]
