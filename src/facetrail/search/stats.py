"""How much is indexed: counts that both front doors show (never a face)."""

from __future__ import annotations

from sqlalchemy import func, select

from ..governance.optout import counts as opt_out_counts
from ..index import VectorIndex
from ..store import Database, Face, Image, Location


def counts(db: Database, index: VectorIndex) -> dict:
    """Images, faces and locations stored, the index's kind and size, and opt-out counts."""
    with db.session() as session:
        count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
        return {
            "images": count(Image),
            "faces": count(Face),
            "locations": count(Location),
            "sources": {
                "files": session.scalar(
                    select(func.count()).select_from(Location).where(Location.image_id.is_not(None))
                )
            },
            "index": {"kind": index.kind, "size": len(index)},
            "opt_outs": opt_out_counts(session),
        }


def face_count(db: Database) -> int:
    """Faces stored in the database (what a rebuilt index will hold)."""
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Face)) or 0
