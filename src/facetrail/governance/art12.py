"""What the EU AI Act's Art. 12(3) asks a remote biometric identification system to record of
each use, beyond what every search entry already holds (who, why, the query's sha256, the
results' ids and distances; confirmations of a match are `match.confirm` entries naming the
search): the period of the use, and the reference database searched.

Art. 26(6) asks deployers to keep the logs at least six months: audit entries are never deleted
(the log is append-only), and a retention setting shorter than that is refused (config.py).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..index import VectorIndex
from ..store import Face

MIN_RETENTION_DAYS = 183  # six months


class Use:
    """The period of one use: started when made, ended when `period` is asked (at recording)."""

    def __init__(self) -> None:
        self.started = datetime.now(UTC)

    def period(self) -> dict:
        ended = datetime.now(UTC)
        return {"started": self.started.isoformat(timespec="microseconds"),
                "ended": ended.isoformat(timespec="microseconds"),
                "seconds": round((ended - self.started).total_seconds(), 6)}


def reference_database(session: Session, index: VectorIndex, model: str) -> dict:
    """The gallery searched: index kind, generation (version), face count, the model, the newest
    stored face, and `snapshot`, a SHA-256 of those that names this state of the gallery (two
    searches with the same snapshot searched the same faces; it is an identifier, computed in
    O(1), not a hash of every vector)."""
    info = {"kind": index.kind, "size": len(index), "version": index.version, "model": model,
            "newest_face": session.scalar(select(func.max(Face.id)))}
    info["snapshot"] = hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()
    return info
