"""How much is indexed: counts that both front doors show (never a face)."""

from __future__ import annotations

from sqlalchemy import func, select

from ..governance.actors import Actor
from ..governance.optout import daily_totals, may_see_counts, removed_today
from ..index import VectorIndex
from ..store import Database, Face, Image, Location


def counts(db: Database, index: VectorIndex, actor: Actor | None = None) -> dict:
    """Images, faces and locations stored, the index's kind and size; opt-out totals per ended day
    for admins and auditors (`actor`; None: the local operator), for no one else. Faces an opt-out
    deleted today are still counted until the day ends, so no count moves with one opt-out."""
    with db.session() as session:
        count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
        today = removed_today(session)
        found = {
            "images": count(Image),
            "faces": count(Face) + today,
            "locations": count(Location),
            "sources": {
                "files": session.scalar(
                    select(func.count()).select_from(Location).where(Location.image_id.is_not(None))
                )
            },
            "index": {"kind": index.kind, "size": len(index) + today},
        }
        if may_see_counts(actor):
            found["opt_outs"] = daily_totals(session)
        return found


def face_count(db: Database) -> int:
    """Faces stored in the database (what a rebuilt index will hold)."""
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Face)) or 0
