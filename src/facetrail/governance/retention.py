"""Retention and repeat-subject detection.

Query photos are never stored. The descriptor of each searched face, with the face model that
made it (descriptors of different models are never compared), is kept for the repeat-subject
window (FACETRAIL_REPEAT_SUBJECT_DAYS, 30) so that one user searching the same person again
and again, under different case references, is noticed: from the
FACETRAIL_REPEAT_SUBJECT_COUNT-th such search (5) the search is held for a supervisor.
`facetrail maintenance` (also run when the server starts) deletes what has outlived its
window: query descriptors and expired sessions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..config import Settings
from ..faces.registry import calibration
from ..store import QueryEmbedding, WebSession
from . import audit
from .actors import Actor


def similar_searches(session: Session, settings: Settings, username: str, vector: np.ndarray,
                     model: str) -> list[str]:
    """Case references of this user's searches in the window whose face matches `vector`, a
    descriptor by `model` (the searcher's; only that model's earlier descriptors are compared)."""
    since = datetime.now(UTC) - timedelta(days=settings.repeat_subject_days)
    rows = session.execute(
        select(QueryEmbedding.case_ref, QueryEmbedding.embedding).where(
            QueryEmbedding.username == username, QueryEmbedding.created_at >= since, QueryEmbedding.model == model
        )
    ).all()
    vector = np.asarray(vector, np.float32).ravel()
    threshold = calibration(settings).match_threshold
    return [r.case_ref for r in rows if _near(r.embedding, vector, threshold)]


def _near(stored: bytes, vector: np.ndarray, threshold: float) -> bool:
    """Whether any of a search's query descriptors (one per photo, stored one after another, by the
    model of `vector`) is within `threshold` of `vector`."""
    earlier = np.frombuffer(stored, np.float32)
    if earlier.size % vector.size:
        return False
    return bool((np.linalg.norm(earlier.reshape(-1, vector.size) - vector, axis=1) <= threshold).any())


def repeat_subject_note(session: Session, settings: Settings, username: str, case_ref: str, vector,
                        model: str) -> str | None:
    """A reason to hold this search, if it is the N-th search of the same face without a shared case
    (`vector`: its descriptor by `model`)."""
    cases = [*similar_searches(session, settings, username, vector, model), case_ref]
    if len(cases) >= settings.repeat_subject_count and len(set(cases)) > 1:
        return (
            f"repeat subject: {len(cases)} searches of the same face by {username} in "
            f"{settings.repeat_subject_days} days, under {len(set(cases))} different case references"
        )
    return None


def remember(session: Session, search_id: int, username: str, case_ref: str, vector, model: str) -> None:
    """Keep a search's query descriptor(s) (one per photo, by `model`) for the repeat-subject window."""
    session.add(
        QueryEmbedding(
            search_id=search_id,
            username=username,
            case_ref=case_ref,
            embedding=np.asarray(vector, np.float32).tobytes(),
            model=model,
            created_at=datetime.now(UTC),
        )
    )


def maintenance(session: Session, settings: Settings, actor: Actor | None = None) -> dict:
    """Delete query descriptors past the window and expired sessions; recorded."""
    now = datetime.now(UTC)
    expired = now - timedelta(days=settings.repeat_subject_days)
    queries = session.execute(delete(QueryEmbedding).where(QueryEmbedding.created_at < expired)).rowcount
    sessions = session.execute(delete(WebSession).where(WebSession.expires_at < now)).rowcount
    counts = {"query_embeddings_deleted": queries, "sessions_deleted": sessions}
    audit.record(session, actor, "maintenance", **counts)
    return counts
