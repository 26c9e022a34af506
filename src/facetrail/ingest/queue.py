"""The ingest queue: files waiting for `facetrail worker`, as rows of the `jobs` table.

Any number of workers, on any number of machines sharing the database (PostgreSQL), claim jobs
in batches with a lease: `SELECT ... FOR UPDATE SKIP LOCKED` hands each job to one worker, and a
job whose worker died (SIGKILL, power loss) is claimed again once its lease has run out. A job
claimed twice is harmless: a file already stored is skipped as unchanged, and bytes stored by
another worker meanwhile become one image with more locations (sha256 is unique).

A re-embed (`facetrail reembed --background`) is queued the same way, as a row of `reembed_jobs`:
one at a time, claimed by one worker under a lease, renewed in the transaction of every batch of
descriptors it commits (so a worker whose lease ran out, or whose job was cancelled, commits none).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from ..errors import Refused
from ..governance import audit
from ..governance.actors import Actor
from ..store import Database, Job, Source
from ..store.db import write_lock
from ..store.models import ReembedJob

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


# --- the re-embed job ----------------------------------------------------------------------------

UNFINISHED = ("queued", "running")


class ReembedQueued(Refused):
    """Another model's re-embed is queued or running: one switch at a time."""

    code = "reembed_queued"


@dataclass(frozen=True)
class ReembedClaim:
    id: int
    model: str
    batch: int
    actor: Actor | None  # who queued it: the switch is recorded in their name


def queue_reembed(session: Session, actor: Actor | None, model: str, batch: int, total: int) -> tuple[ReembedJob, bool]:
    """Queue the re-embed to `model` (recorded: `model.reembed.queue`); the job already queued or
    running for `model` if there is one (False: not new). Refused while another model's is."""
    write_lock(session, "reembed_jobs")  # SQLite: two commands queueing at once make one job
    unfinished = session.scalars(select(ReembedJob).where(ReembedJob.status.in_(UNFINISHED))
                                 .order_by(ReembedJob.id).with_for_update()).first()
    if unfinished is not None and unfinished.model == model:
        return unfinished, False
    if unfinished is not None:
        raise ReembedQueued(f"a re-embed to {unfinished.model} is {unfinished.status} (job {unfinished.id}): "
                            "cancel it first (`facetrail reembed --cancel`) or wait until it has switched")
    job = ReembedJob(model=model, status="queued", actor=asdict(actor) if actor else {}, batch=batch,
                     described=0, total=total, created_at=_now())
    session.add(job)
    session.flush()
    audit.record(session, actor, "model.reembed.queue", model=model, job=job.id, faces=total)
    return job, True


def claim_reembed(db: Database, worker: str, lease_seconds: float = 300) -> ReembedClaim | None:
    """Lease the queued re-embed (or one whose worker's lease ran out) to `worker`."""
    now = _now()
    claimable = or_(ReembedJob.status == "queued",
                    and_(ReembedJob.status == "running", ReembedJob.lease_until < now))
    with db.session() as session, session.begin():
        write_lock(session, "reembed_jobs")  # SQLite: no second worker reads it claimable meanwhile
        job = session.scalars(select(ReembedJob).where(claimable).order_by(ReembedJob.id).limit(1)
                              .with_for_update(skip_locked=True)).first()
        if job is None:
            return None
        job.status, job.worker, job.lease_until = "running", worker, now + timedelta(seconds=lease_seconds)
        return ReembedClaim(job.id, job.model, job.batch, Actor(**job.actor) if job.actor else None)


def renew_reembed(session: Session, worker: str, job_id: int, lease_seconds: float, described: int = 0,
                  total: int | None = None) -> bool:
    """In the caller's transaction: extend `worker`'s lease and count `described` more faces. False if
    the job is no longer this worker's (cancelled, or claimed by another after the lease ran out):
    then the caller must roll back."""
    values = {"lease_until": _now() + timedelta(seconds=lease_seconds),
              "described": ReembedJob.described + described}
    if total is not None:
        values["total"] = total
    return bool(session.execute(update(ReembedJob).where(
        ReembedJob.id == job_id, ReembedJob.worker == worker, ReembedJob.status == "running").values(**values)
    ).rowcount)


def end_reembed(session: Session, worker: str, job_id: int, status: str, error: str | None = None) -> bool:
    """In the caller's transaction: `worker`'s job is done (or failed); False if it is no longer its."""
    return bool(session.execute(update(ReembedJob).where(
        ReembedJob.id == job_id, ReembedJob.worker == worker, ReembedJob.status == "running").values(
        status=status, error=error, lease_until=None, finished_at=_now())).rowcount)


def release_reembed(db: Database, worker: str, job_id: int) -> bool:
    """Give `worker`'s job back to the queue at once (a worker stopping)."""
    with db.session() as session, session.begin():
        return bool(session.execute(update(ReembedJob).where(
            ReembedJob.id == job_id, ReembedJob.worker == worker, ReembedJob.status == "running").values(
            status="queued", worker=None, lease_until=None)).rowcount)


def cancel_reembed(session: Session, actor: Actor | None) -> ReembedJob | None:
    """Cancel the queued or running re-embed (recorded: `model.reembed.cancel`); its worker stops at
    its next batch, which it does not commit. The descriptors made so far stay: a later re-embed to
    the same model resumes from them. None if there is none."""
    write_lock(session, "reembed_jobs")
    job = session.scalars(select(ReembedJob).where(ReembedJob.status.in_(UNFINISHED))
                          .order_by(ReembedJob.id).with_for_update()).first()
    if job is None:
        return None
    job.status, job.lease_until, job.finished_at = "cancelled", None, _now()
    audit.record(session, actor, "model.reembed.cancel", model=job.model, job=job.id, described=job.described)
    return job


def reembed_jobs(session: Session, limit: int = 5) -> list[dict]:
    """The latest re-embed jobs, newest first, as plain data (`facetrail reembed --status`)."""
    jobs = session.scalars(select(ReembedJob).order_by(ReembedJob.id.desc()).limit(limit)).all()
    now = _now()
    return [{"id": j.id, "model": j.model, "status": j.status, "described": j.described, "total": j.total,
             "queued_by": j.actor.get("username", "system"), "worker": j.worker,
             "lease_until": j.lease_until.isoformat() if j.lease_until else None,
             "lease_ran_out": j.status == "running" and j.lease_until is not None and j.lease_until < now,
             "created_at": j.created_at.isoformat(), "finished_at": j.finished_at.isoformat() if j.finished_at else None,
             "error": j.error} for j in jobs]


def reembed_waiting(session: Session) -> bool:
    """Whether a re-embed is queued or running (a worker with --until-empty waits for it)."""
    return session.scalar(select(func.count()).select_from(ReembedJob).where(
        ReembedJob.status.in_(UNFINISHED))) > 0
