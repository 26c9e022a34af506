"""Images that no location refers to any more leave the database, the index and the media folder."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from .models import Face, Image, Location

Orphan = tuple[str, list[int]]  # (image sha256, its face ids)


def delete_unreferenced(session: Session, image_ids: Iterable[int]) -> list[Orphan]:
    """Delete those of `image_ids` that no location refers to, with their faces, in the caller's
    transaction. Returns what the caller must drop from the index and media once committed."""
    orphans = []
    for image_id in set(image_ids):
        if session.scalar(select(func.count()).select_from(Location).where(Location.image_id == image_id)):
            continue
        sha = session.scalar(select(Image.sha256).where(Image.id == image_id))
        if sha is None:
            continue
        orphans.append((sha, list(session.scalars(select(Face.id).where(Face.image_id == image_id)))))
        session.execute(delete(Face).where(Face.image_id == image_id))
        session.execute(delete(Image).where(Image.id == image_id))
    return orphans


def drop(orphans: list[Orphan], index, media) -> int:
    """After the commit: take deleted images' faces out of the vector index and their media off disk.
    Returns the number of faces removed."""
    removed = 0
    for sha, face_ids in orphans:
        if face_ids:
            removed += index.remove(np.array(face_ids, np.int64))
        media.delete(sha, len(face_ids))
    return removed
