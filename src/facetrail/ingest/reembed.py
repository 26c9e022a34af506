"""`facetrail reembed --model NAME`: every stored face described again by another model, then
one recorded switch.

The new descriptors are made from the face crops kept at ingest (media/faces: a square around
the face box with a quarter of its size as margin, 160 px), not from the original files, which
may be gone: the model's own detector finds the face again in the crop (the one nearest the
crop's centre) and its embedder describes it. They are written to `face_vectors`, a batch per
transaction, so a killed run resumes where it stopped; the active model's index keeps serving
meanwhile. When every face has one, a single transaction moves them into `faces`, drops the
faces the new model cannot find in their crops, and records `model.switch` in the audit log.
The index is then rebuilt for the new model, in its own folder.

Which model is active after that (`after_switch` says it to the operator): for `facetrail serve`
without face_model set, the stored faces' model (faces/registry.py `in_use`), so a running server
follows the switch at its next index round (`Searcher.following`: it loads the new model and
opens its index, no restart), and a search under way during the switch runs entirely on one
model. Where face_model is set to the old model, opening the index is refused
(`model_mismatch`) until it names the new one. Other commands and ingest workers load the
model of face_model: they must be given the new one (and workers restarted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, select, update

from ..config import Settings
from ..errors import Refused
from ..faces import FaceEngine, load_engine
from ..faces.registry import model_info, pinned
from ..governance import audit
from ..governance.actors import Actor
from ..images.decode import DecodeError, decode
from ..index import load_index
from ..store import Database, Face, Image
from ..store.db import write_lock
from ..store.media import MediaStore
from ..store.models import FaceVector, OptOut

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


def embed_pending(settings: Settings, db: Database, engine: FaceEngine, batch: int = BATCH,
                  advance: Callable[[int], None] | None = None) -> int:
    """Describes every face still lacking a descriptor by the engine's model, a batch per commit.
    Returns how many were described in this run."""
    media = MediaStore(settings.media_dir)
    described = 0
    while True:
        with db.session() as session:
            rows = _pending(session, engine.model_name, batch)
        if not rows:
            return described
        vectors = [describe_crop(engine, _read(media, sha, idx)) for _, sha, idx in rows]
        with db.session() as session, session.begin():
            session.add_all(FaceVector(face_id=face_id, model=engine.model_name,
                                       embedding=None if v is None else np.asarray(v, np.float32).tobytes())
                            for (face_id, _, _), v in zip(rows, vectors))
        described += len(rows)
        if advance:
            advance(len(rows))


def refuse_if_opt_outs_stay_behind(session, model: str) -> None:
    """Refused while opt-outs recorded with another model exist: an opt-out keeps that model's
    descriptors only, never the photos, so after a switch it could recognise neither new photos
    of the person nor their faces hidden at query time: they would come back."""
    behind = session.scalar(select(func.count()).select_from(OptOut).where(
        func.coalesce(OptOut.model, "dlib_resnet_v1") != model))
    if behind:
        raise Refused(f"{behind} opt-out(s) were recorded with another face model than {model}; an opt-out "
                      "keeps only that model's descriptors (never the photos), so after the switch those people "
                      "could be found again. Switching models with opt-outs is not possible yet (docs/models.md)",
                      code="opt_outs_of_another_model")


def switch(db: Database, actor: Actor | None, model: str, media: MediaStore) -> Switch | None:
    """In one transaction: every face takes its descriptor by `model`, faces without one are
    deleted, the switch is recorded. None (nothing changed) if some face still lacks one (an
    ingest added it meanwhile): describe it first. Refused while opt-outs of another model exist."""
    with db.session() as session, session.begin():
        write_lock(session, "faces")
        refuse_if_opt_outs_stay_behind(session, model)
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(Face.id).with_for_update())  # no ingest commits faces meanwhile
        done = select(FaceVector.face_id).where(FaceVector.model == model)
        if session.scalar(select(func.count()).select_from(Face).where(Face.model != model, Face.id.not_in(done))):
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
    """What the operator must do once the faces were switched to `model`, for a person."""
    if pinned(settings) and settings.face_model != model:
        return (f"face_model is set to {settings.face_model} here (FACETRAIL_FACE_MODEL or facetrail.toml): "
                f"set it to {model}, or remove it to follow the stored faces, wherever it is set, and "
                "restart `facetrail serve` and ingest workers; until then they refuse to search or ingest "
                "(model_mismatch).")
    server = (f"A running `facetrail serve` without face_model set follows the switch by itself within "
              f"{follow_seconds:g} s (it loads {model} and opens its index): no restart needed; one started "
              "with face_model set to another model refuses searches (model_mismatch) until that setting is "
              "changed and it is restarted.")
    if pinned(settings):
        return f"Nothing to change here (face_model is {model}). {server}"
    ingest = (f"Other commands (ingest, workers, search) use face_model: set FACETRAIL_FACE_MODEL={model} "
              "(or face_model in facetrail.toml) for them, and restart workers running since before the "
              "switch.")
    return f"{server}\n{ingest}"


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


def reembed(settings: Settings, db: Database, actor: Actor | None, model: str, batch: int = BATCH,
            advance: Callable[[int], None] | None = None) -> Switch:
    """Describe every stored face with `model` (resumable), build its index, then switch in one
    transaction."""
    model_info(model)  # a known model, or refused before any work
    with db.session() as session:
        refuse_if_opt_outs_stay_behind(session, model)  # before any work
    engine = load_engine(settings, model)
    media = MediaStore(settings.media_dir)
    while True:
        embed_pending(settings, db, engine, batch, advance)
        build_index(settings, db, model)  # complete before the switch: the server's next round opens it
        done = switch(db, actor, model, media)
        if done is not None:
            return done
