"""The ingest queue: files waiting for `facetrail worker`, as rows of the `jobs` table.

Any number of workers, on any number of machines sharing the database (PostgreSQL), claim jobs
in batches with a lease: `SELECT ... FOR UPDATE SKIP LOCKED` hands each job to one worker, and a
job whose worker died (SIGKILL, power loss) is claimed again once its lease has run out. A job
claimed twice is harmless: a file already stored is skipped as unchanged, and bytes stored by
another worker meanwhile become one image with more locations (sha256 is unique).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from ..store import Database, Job, Source

BATCH = 16


@dataclass(frozen=True)
class Claimed:
    id: int
    source_id: int
    location: str


def _now() -> datetime:
    return datetime.now(UTC)


def enqueue(session: Session, source: Source, locations: Iterable[str]) -> int:
    """Queue files of `source` (again, if they were done); returns how many were queued anew.
    Files queued or running already are left as they are."""
    now = _now()
    queued = 0
    locations = list(dict.fromkeys(locations))
    for start in range(0, len(locations), 500):
        chunk = locations[start:start + 500]
        known = dict(session.execute(select(Job.location, Job.status).where(
            Job.source_id == source.id, Job.location.in_(chunk))).all())
        new = [loc for loc in chunk if loc not in known]
        if new:
            session.execute(insert(Job), [{"source_id": source.id, "location": loc, "status": "queued",
                                           "attempts": 0, "created_at": now} for loc in new])
        again = [loc for loc, status in known.items() if status in ("done", "failed")]
        if again:
            session.execute(update(Job).where(Job.source_id == source.id, Job.location.in_(again))
                            .values(status="queued", worker=None, lease_until=None, error=None, finished_at=None))
        queued += len(new) + len(again)
    return queued


def claim(db: Database, worker: str, batch: int = BATCH, lease_seconds: float = 300) -> list[Claimed]:
    """Lease up to `batch` claimable jobs of one source (the oldest one's) to `worker`."""
    now = _now()
    claimable = or_(Job.status == "queued", and_(Job.status == "running", Job.lease_until < now))
    with db.session() as session, session.begin():
        first = session.execute(select(Job.id, Job.source_id).where(claimable).order_by(Job.id).limit(1)
                                .with_for_update(skip_locked=True)).first()
        if first is None:
            return []
        rows = session.execute(
            select(Job.id, Job.location).where(claimable, Job.source_id == first.source_id)
            .order_by(Job.id).limit(batch).with_for_update(skip_locked=True)).all()
        ids = [row.id for row in rows]
        session.execute(update(Job).where(Job.id.in_(ids)).values(
            status="running", worker=worker, lease_until=now + timedelta(seconds=lease_seconds),
            attempts=Job.attempts + 1))
    return [Claimed(row.id, first.source_id, row.location) for row in rows]


def finish(db: Database, worker: str, jobs: list[Claimed], errors: dict[str, str] | None = None) -> int:
    """Mark `worker`'s jobs done (or failed, with the reason, for locations in `errors`); a job
    another worker has claimed since (its lease ran out) is left to that worker. Returns how many."""
    errors = errors or {}
    now = _now()
    done = 0
    with db.session() as session, session.begin():
        for job in jobs:
            error = errors.get(job.location)
            done += session.execute(update(Job).where(Job.id == job.id, Job.worker == worker).values(
                status="failed" if error else "done", error=error, lease_until=None, finished_at=now)).rowcount
    return done


def release(db: Database, worker: str, jobs: list[Claimed]) -> int:
    """Give `worker`'s unfinished jobs back to the queue at once (a worker stopping), instead of
    leaving them to wait for their lease to run out. Returns how many."""
    with db.session() as session, session.begin():
        return session.execute(update(Job).where(
            Job.id.in_([job.id for job in jobs]), Job.worker == worker, Job.status == "running").values(
            status="queued", worker=None, lease_until=None)).rowcount


def counts(session: Session) -> dict[str, int]:
    """Jobs by status; `expired` counts running jobs whose lease has run out."""
    found = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    found["expired"] = session.scalar(select(func.count()).select_from(Job).where(
        Job.status == "running", Job.lease_until < _now())) or 0
    return {status: found.get(status, 0) for status in ("queued", "running", "expired", "done", "failed")}
