"""`facetrail reembed --model NAME`: every stored face described again by another model, then
one recorded switch.

The new descriptors are made from the face crops kept at ingest (media/faces: a square around
the face box with a quarter of its size as margin, 160 px), not from the original files, which
may be gone: the model's own detector finds the face again in the crop (the one nearest the
crop's centre) and its embedder describes it. They are written to `face_vectors`, a batch per
transaction, so a killed run resumes where it stopped; the active model's index keeps serving
meanwhile. When every face has one, a single transaction moves them into `faces`, drops the
faces the new model cannot find in their crops, and records `model.switch` in the audit log.
The new model's index is built, in its own folder, just before the switch.

It runs in the foreground (`reembed`) or, queued with `facetrail reembed --background`, in a
`facetrail worker` between its ingest batches (`ReembedRunner`, the job in ingest/queue.py).

Which model is active after that (`after_switch` says it to the operator): where face_model is
not set, the stored faces' model (faces/registry.py `in_use`) for every command (cli/common.py
`open_db`), for a running server at its next index round (`Searcher.following`) and for a running
worker before its next batch (worker.py). Where face_model is set to the old model, they refuse
(`model_mismatch`) until it names the new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import Refused
from ..faces import FaceEngine, load_engine
from ..faces.registry import DEFAULT, model_info, pinned, stored_model
from ..governance import audit
from ..governance.actors import Actor
from ..images.decode import DecodeError, decode
from ..index import load_index
from ..store import Database, Face, Image
from ..store.db import write_lock
from ..store.media import MediaStore
from ..store.models import FaceVector, OptOut, OptOutVector, ReembedJob
from .queue import (
    UNFINISHED,
    ReembedClaim,
    ReembedQueued,
    cancel_reembed,
    claim_reembed,
    end_reembed,
    queue_reembed,
    reembed_jobs,
    release_reembed,
    renew_reembed,
)

BATCH = 32
INDEX_BATCH = 10_000  # descriptors read per query while building the new model's index


@dataclass
class Switch:
    model: str
    previous: list[str]
    faces: int  # faces now described by the new model
    dropped: int  # faces the new model found no face in (deleted)


def _pending(session, model: str, limit: int) -> list[tuple[int, str, int]]:
    """Faces (id, image sha256, idx) without a descriptor by `model` yet, oldest first."""
    done = select(FaceVector.face_id).where(FaceVector.model == model)
    return session.execute(
        select(Face.id, Image.sha256, Face.idx).join(Image, Image.id == Face.image_id)
        .where(Face.model != model, Face.id.not_in(done)).order_by(Face.id).limit(limit)
    ).all()


def pending_count(db: Database, model: str) -> int:
    with db.session() as session:
        done = select(FaceVector.face_id).where(FaceVector.model == model)
        return session.scalar(select(func.count()).select_from(Face).where(Face.model != model,
                                                                            Face.id.not_in(done)))


def describe_crop(engine: FaceEngine, crop: bytes) -> np.ndarray | None:
    """The descriptor of the face nearest the crop's centre, or None if the model finds none."""
    try:
        pixels = decode(crop).pixels
    except DecodeError:
        return None
    faces = engine.faces(pixels)
    if not faces:
        return None
    centre = np.array(pixels.shape[1::-1]) / 2
    nearest = min(faces, key=lambda f: np.linalg.norm(np.array(f.box[:2]) + np.array(f.box[2:]) - 2 * centre))
    return nearest.embedding


def _read(media: MediaStore, sha256: str, idx: int) -> bytes:
    try:
        return media.crop_path(sha256, idx).read_bytes()
    except OSError:
        return b""


def embed_batch(settings: Settings, db: Database, engine: FaceEngine, batch: int = BATCH,
                inside: Callable[[Session, int], bool] | None = None) -> int | None:
    """Describes up to `batch` faces still lacking a descriptor by the engine's model, in one commit.
    `inside(session, n)`, called in that transaction, may refuse it (False: rolled back, None
    returned): a job's lease is renewed there. Returns how many were described (0: none pending)."""
    media = MediaStore(settings.media_dir)
    with db.session() as session:
        rows = _pending(session, engine.model_name, batch)
    if not rows:
        return 0
    vectors = [describe_crop(engine, _read(media, sha, idx)) for _, sha, idx in rows]
    with db.session() as session, session.begin():
        if inside is not None and not inside(session, len(rows)):
            session.rollback()
            return None
        session.add_all(FaceVector(face_id=face_id, model=engine.model_name,
                                   embedding=None if v is None else np.asarray(v, np.float32).tobytes())
                        for (face_id, _, _), v in zip(rows, vectors))
    return len(rows)


def embed_pending(settings: Settings, db: Database, engine: FaceEngine, batch: int = BATCH,
                  advance: Callable[[int], None] | None = None) -> int:
    """Describes every face still lacking a descriptor by the engine's model, a batch per commit.
    Returns how many were described in this run."""
    described = 0
    while n := embed_batch(settings, db, engine, batch):
        described += n
        if advance:
            advance(n)
    return described


def refuse_if_opt_outs_stay_behind(session, model: str) -> None:
    """Refused while some opt-out holds no descriptors by `model`: an opt-out keeps descriptors
    (one set per model that described its photos when it was recorded), never the photos, so
    after a switch one without `model`'s could recognise neither new photos of the person nor
    their faces hidden at query time: they would come back."""
    described = select(OptOutVector.opt_out_id).where(OptOutVector.model == model)
    behind = session.scalars(select(OptOut.id).where(OptOut.id.not_in(described)).order_by(OptOut.id)).all()
    if behind:
        shown = ", ".join(map(str, behind[:10])) + (", ..." if len(behind) > 10 else "")
        raise Refused(f"{len(behind)} opt-out(s) hold no descriptors by {model} (ids {shown}): recorded before "
                      "opt-outs kept every model's descriptors, or when that model found no face in their photos "
                      "or was not installed. An opt-out never keeps the photos, so after the switch those people "
                      "could be found again, and their descriptors cannot be made afterwards: stay with the "
                      "current model (docs/models.md, Switching models)",
                      code="opt_outs_of_another_model")


def switch(db: Database, actor: Actor | None, model: str, media: MediaStore,
           inside: Callable[[Session], bool] | None = None) -> Switch | None:
    """In one transaction: every face takes its descriptor by `model`, faces without one are
    deleted, the switch is recorded. None (nothing changed) if some face still lacks one (an
    ingest added it meanwhile): describe it first; or if `inside(session)`, called in that
    transaction, says no (a queued job marks itself done there, so it switches once). Refused
    while opt-outs of another model exist."""
    with db.session() as session, session.begin():
        write_lock(session, "faces")
        if inside is not None and not inside(session):
            return None
        refuse_if_opt_outs_stay_behind(session, model)
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(Face.id).with_for_update())  # no ingest commits faces meanwhile
        done = select(FaceVector.face_id).where(FaceVector.model == model)
        if session.scalar(select(func.count()).select_from(Face).where(Face.model != model, Face.id.not_in(done))):
            session.rollback()  # `inside` may have written
            return None
        previous = sorted(set(session.scalars(select(Face.model).where(Face.model != model).distinct())))
        lost = session.execute(
            select(Face.id, Image.sha256, Face.idx).join(Image, Image.id == Face.image_id)
            .join(FaceVector, (FaceVector.face_id == Face.id) & (FaceVector.model == model))
            .where(FaceVector.embedding.is_(None))
        ).all()
        new = select(FaceVector.embedding).where(FaceVector.face_id == Face.id, FaceVector.model == model)
        changed = session.execute(
            update(Face).where(Face.model != model, Face.id.in_(
                select(FaceVector.face_id).where(FaceVector.model == model, FaceVector.embedding.is_not(None))))
            .values(embedding=new.scalar_subquery(), model=model).execution_options(synchronize_session=False)
        ).rowcount
        session.execute(delete(Face).where(Face.id.in_([face_id for face_id, _, _ in lost])))
        session.execute(delete(FaceVector).where(FaceVector.model == model))
        result = Switch(model, previous, changed, len(lost))
        audit.record(session, actor, "model.switch", model=model, previous=previous, faces=changed,
                     dropped=len(lost))
    for _, sha, idx in lost:  # their crops go too (after the commit)
        media.crop_path(sha, idx).unlink(missing_ok=True)
    return result


def after_switch(settings: Settings, model: str, follow_seconds: float) -> str:
    """What is true once the faces were switched to `model`, and what the operator must still do."""
    if pinned(settings) and settings.face_model != model:
        return (f"face_model is set to {settings.face_model} here (FACETRAIL_FACE_MODEL or facetrail.toml): "
                f"set it to {model}, or remove it to follow the stored faces, wherever it is set; until then "
                "commands, workers and servers with that setting refuse to search or ingest (model_mismatch); "
                "restart those already running once it is changed.")
    following = (f"Where face_model is not set, every command (ingest, search, watch, evidence) now uses {model}; "
                 "a running `facetrail worker` loads it before its next batch, and a running `facetrail serve` "
                 f"within {follow_seconds:g} s (it opens the index built here): no restart needed. Where face_model "
                 "is set to another model, they refuse to search or ingest (model_mismatch) until it is changed.")
    if pinned(settings):
        return f"Nothing to change here (face_model is {model}). {following}"
    return following


def build_index(settings: Settings, db: Database, model: str) -> int:
    """`model`'s index (its own folder or collection) built again from its descriptors, before the
    switch: those in `face_vectors` and the faces already of that model. Whoever opens it after the
    switch (a server following it, `Searcher.following`) then only syncs what the switch dropped or
    an ingest added meanwhile. Closed when built (a server may own it next). Returns its size."""
    index = load_index(settings.model_copy(update={"face_model": model}))
    try:
        index.reset()
        with index.maintenance_paused():
            for table, key, where in ((FaceVector, FaceVector.face_id, (FaceVector.model == model,
                                                                         FaceVector.embedding.is_not(None))),
                                      (Face, Face.id, (Face.model == model,))):
                last = 0
                while True:
                    with db.session() as session:
                        rows = session.execute(select(key, table.embedding).where(*where, key > last)
                                               .order_by(key).limit(INDEX_BATCH)).all()
                    if not rows:
                        break
                    index.add(np.array([r[0] for r in rows], np.int64),
                              np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(-1, index.dim))
                    last = rows[-1][0]
        index.save()
        return len(index)
    finally:
        index.close()


def preflight(db: Database, model: str) -> int:
    """Refused before any work: an unknown model, a queued re-embed (`reembed_queued`), opt-outs
    the switch would leave behind. Else how many faces lack a descriptor by `model`."""
    model_info(model)
    with db.session() as session:
        refuse_while_queued(session)
        refuse_if_opt_outs_stay_behind(session, model)
    return pending_count(db, model)


def reembed(settings: Settings, db: Database, actor: Actor | None, model: str, batch: int = BATCH,
            advance: Callable[[int], None] | None = None) -> Switch:
    """Describe every stored face with `model` (resumable), build its index, then switch in one
    transaction."""
    preflight(db, model)
    engine = load_engine(settings, model)
    media = MediaStore(settings.media_dir)
    while True:
        embed_pending(settings, db, engine, batch, advance)
        build_index(settings, db, model)  # complete before the switch: the server's next round opens it
        done = switch(db, actor, model, media)
        if done is not None:
            return done


def queue(db: Database, actor: Actor | None, model: str, batch: int = BATCH) -> tuple[dict, bool]:
    """Queue the re-embed to `model` for `facetrail worker` (`--background`): the job as plain data,
    and whether it is new (a re-embed to `model` already queued or running is that one). Refused
    for an unknown model, while opt-outs of another model exist, or while a re-embed to another
    model is queued or running (`reembed_queued`)."""
    model_info(model)
    with db.session() as session:
        refuse_if_opt_outs_stay_behind(session, model)  # before any work
    total = pending_count(db, model)
    if total == 0 and (stored_model(db) or DEFAULT) == model:
        raise Refused(f"the stored faces are all {model}'s already: nothing to re-embed", code="already_this_model")
    with db.session() as session, session.begin():
        job, new = queue_reembed(session, actor, model, batch, total)
        return {"id": job.id, "model": job.model, "status": job.status, "total": job.total}, new


def refuse_while_queued(session: Session) -> None:
    """Refused while a queued re-embed is waiting or running: the two would describe the same faces."""
    job = session.scalars(select(ReembedJob).where(ReembedJob.status.in_(UNFINISHED))).first()
    if job is not None:
        raise ReembedQueued(f"a re-embed to {job.model} is {job.status} (job {job.id}, for `facetrail worker`): "
                            "wait for it (`facetrail reembed --status`) or cancel it (`facetrail reembed --cancel`)")


def jobs(db: Database) -> list[dict]:
    """The latest re-embed jobs, newest first (`facetrail reembed --status`)."""
    with db.session() as session:
        return reembed_jobs(session)


def cancel(db: Database, actor: Actor | None) -> dict | None:
    """Cancel the queued or running re-embed (its worker commits no further batch); None if none."""
    with db.session() as session, session.begin():
        job = cancel_reembed(session, actor)
        return None if job is None else {"id": job.id, "model": job.model, "described": job.described}


@dataclass
class ReembedRunner:
    """The re-embed job a `facetrail worker` runs between its ingest batches (`step`, one batch of
    descriptors per call): claimed under a lease, renewed in each batch's transaction; when no face
    lacks a descriptor, the new model's index is built and the switch committed together with the
    job's end, in the name of whoever queued it. A cancelled job, or one another worker took over,
    is dropped without committing the batch in hand."""

    settings: Settings
    db: Database
    worker: str
    lease_seconds: float = 300
    log: Callable[[str], None] = print
    job: ReembedClaim | None = None
    engines: dict[str, FaceEngine] | None = None
    left: int = 0  # faces the job had to describe when this worker claimed it
    described: int = 0  # of those, described by this worker (progress logged every tenth)

    def step(self) -> bool:
        """One batch of the job (claimed first if need be). False: no re-embed to run."""
        fresh = self.job is None
        if fresh:
            self.job = claim_reembed(self.db, self.worker, self.lease_seconds)
            if self.job is None:
                return False
        job = self.job
        try:
            if fresh:
                self._claimed()
            described = embed_batch(self.settings, self.db, self._engine(job.model), job.batch,
                                    lambda session, n: renew_reembed(session, self.worker, job.id,
                                                                     self.lease_seconds, n))
            if described is None:
                self.log(f"re-embed to {job.model} (job {job.id}) was cancelled or taken over: stopped")
                self.job = None
            elif described == 0:
                self._switch(job)
            else:
                self._progress(job, described)
        except Refused as exc:  # e.g. opt-outs of the old model: the job fails, the worker goes on
            self._end(job, "failed", str(exc))
            self.log(f"re-embed to {job.model} (job {job.id}) failed: {exc}")
        return True

    def release(self) -> None:
        """Give the job back to the queue at once (the worker is stopping)."""
        if self.job is not None:
            release_reembed(self.db, self.worker, self.job.id)
            self.job = None

    def _claimed(self) -> None:
        """Its total: what it described so far (an earlier worker) and what is left."""
        job = self.job
        model_info(job.model)
        left = pending_count(self.db, job.model)
        with self.db.session() as session, session.begin():
            session.execute(update(ReembedJob).where(ReembedJob.id == job.id, ReembedJob.worker == self.worker)
                            .values(total=ReembedJob.described + left))
        self.left, self.described = left, 0
        self.log(f"re-embed to {job.model} (job {job.id}): {left} faces to describe")

    def _progress(self, job: ReembedClaim, n: int) -> None:
        """Logged at every tenth of the faces this worker had to describe."""
        before, self.described = self.described, self.described + n
        if self.left and self.described * 10 // self.left > before * 10 // self.left:
            self.log(f"re-embed to {job.model} (job {job.id}): {min(self.described, self.left)} of {self.left} "
                     "faces described")

    def _engine(self, model: str) -> FaceEngine:
        if self.engines is None:
            self.engines = {}
        if model not in self.engines:
            self.engines[model] = load_engine(self.settings, model)
        return self.engines[model]

    def _switch(self, job: ReembedClaim) -> None:
        with self.db.session() as session, session.begin():
            if not renew_reembed(session, self.worker, job.id, self.lease_seconds):
                self.job = None
                return
        build_index(self.settings, self.db, job.model)  # complete before the switch
        done = switch(self.db, job.actor, job.model, MediaStore(self.settings.media_dir),
                      lambda session: end_reembed(session, self.worker, job.id, "done"))
        if done is not None:
            self.job = None
            self.log(f"switched to {job.model} (job {job.id}, from {', '.join(done.previous) or 'none'}): "
                     f"{done.faces} faces, {done.dropped} without a face for it removed")

    def _end(self, job: ReembedClaim, status: str, error: str | None = None) -> None:
        with self.db.session() as session, session.begin():
            end_reembed(session, self.worker, job.id, status, error)
        self.job = None
