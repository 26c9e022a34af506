"""Vector index: derived from the `faces` table, which stays the source of truth.

Backend, chosen by ``Settings.vector_uri``

* ``""`` (default): FAISS files in ``settings.index_dir``, served by a `FaissStore`.
* a path ending in ``.db``: milvus-lite (`MilvusIndex`, collection ``faces``) embedded in this
  process; a relative path is taken inside the data folder. One process at a time.
* ``http(s)://host:port``: a Milvus server (`MilvusIndex`, token ``settings.vector_token``).

Every backend implements `VectorIndex` (base.py); nothing here or above asks which backend it got.
`open_index` loads the backend and brings it in step with the database (`sync`: missing faces
added, stale ones removed); `load_index` loads it without syncing (for `check` and status);
`rebuild` starts over from the database; `index_status` reports what is held and how.

How the FAISS store chooses exact or compressed search, trains and shares its folder: see
`faiss_store.py`.
"""


from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from ..config import Settings
from ..errors import Refused
from ..store import Database, Face
from .base import VectorIndex
from .faiss_index import FaissIndex
from ..faces.registry import model_info
from .faiss_store import FaissStore, remove_legacy_files, store_for

BATCH = 10_000
COLLECTION = "faces"

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- sync

FOLLOW_SECONDS = 15.0


def follow_database(current: Callable[[], tuple[VectorIndex, str | None]], db: Database,
                    stop: threading.Event, every: float = FOLLOW_SECONDS) -> None:
    """Until `stop` is set, every `every` seconds: `current()` gives the index to follow and its face
    model (the web app: its searcher's, after following a model switch, `Searcher.following`); if
    the faces in the database changed (their count or highest id), bring that index in step (other
    processes ingest into the database). A new index (another model's) is followed from scratch."""
    seen, followed = None, None
    while not stop.wait(every):
        try:
            index, model = current()
            if index is not followed:
                seen, followed = None, index
            seen = follow_once(index, db, seen, model)
        except Exception:  # noqa: BLE001 - keep following; the next round retries
            log.exception("could not bring the vector index in step with the database")


def follow_once(index: VectorIndex, db: Database, seen: tuple[int, int] | None,
                model: str | None = None) -> tuple[int, int]:
    """One round of `follow_database`. `seen`: (count, highest id) of the faces when the index was
    last in step. If faces were only added since (the usual case: an ingest elsewhere), just those
    are read; any other change (a deletion) brings a whole `sync`. `model`: the index's face model;
    faces of another one are never added to it (`sync`). Returns the new `seen`."""
    with db.session() as session:
        now = tuple(session.execute(select(func.count(Face.id), func.coalesce(func.max(Face.id), 0))).one())
    if now == seen:
        return now
    if seen is not None and now[1] > seen[1]:
        with db.session() as session:
            rows = session.execute(select(Face.id, Face.embedding, Face.model).where(
                Face.id > seen[1], Face.id <= now[1]).order_by(Face.id)).all()
        if seen[0] + len(rows) == now[0]:  # nothing was deleted: the new rows are the whole change
            rows = [r for r in rows if model is None or r.model == model]
            ids = np.array([r.id for r in rows], np.int64)
            fresh = ~np.isin(ids, index.ids()) if len(index) else np.ones(len(ids), bool)
            if fresh.any():
                vectors = np.frombuffer(b"".join(r.embedding for r in rows), np.float32).reshape(-1, index.dim)
                index.add(ids[fresh], vectors[fresh])
                index.save()
            return now
    sync(index, db, model=model)
    return now


def sync(index: VectorIndex, db: Database, progress: Callable[[int], None] | None = None,
         model: str | None = None) -> tuple[int, int]:
    """Make the index hold exactly the faces in the database (of `model` only, if given: an index
    never takes another model's vectors, even from a switch committed during the sync). Returns
    (added, removed)."""
    with db.session() as session:
        db_ids = np.fromiter(session.scalars(select(Face.id)), dtype=np.int64)
    held = index.ids()
    stale = np.setdiff1d(held, db_ids, assume_unique=True)
    missing = np.setdiff1d(db_ids, held, assume_unique=True)
    removed = index.remove(stale)
    for start in range(0, len(missing), BATCH):
        chunk = missing[start : start + BATCH]
        with db.session() as session:
            rows = session.execute(select(Face.id, Face.embedding).where(
                Face.id.in_(chunk.tolist()), *([Face.model == model] if model else []))).all()
        index.add(
            np.array([r.id for r in rows], np.int64),
            np.frombuffer(b"".join(r.embedding for r in rows), np.float32).reshape(-1, index.dim),
        )
        if progress:
            progress(len(rows))
    if removed or len(missing):
        index.save()
    return len(missing), removed


# ---------------------------------------------------------------------- Milvus


def _milvus_uri(settings: Settings) -> str:
    uri = settings.vector_uri.strip()
    if uri.startswith(("http://", "https://")):
        return uri
    if uri.endswith(".db"):
        path = Path(uri).expanduser()
        return str((path if path.is_absolute() else settings.data_dir / path).resolve())
    raise ValueError(
        f"vector_uri {uri!r}: expected empty (FAISS in the data folder), a path ending in .db "
        "(milvus-lite) or http(s)://host:port (a Milvus server)"
    )


def _milvus(settings: Settings) -> VectorIndex:
    from .milvus_index import MilvusIndex  # pymilvus is needed only when chosen

    return MilvusIndex(_milvus_uri(settings), collection(settings), model_info(settings.face_model).dim,
                       token=settings.vector_token)


def collection(settings: Settings) -> str:
    """The Milvus collection of the active face model (the default model's keeps its old name)."""
    default = type(settings).model_fields["face_model"].default
    return COLLECTION if settings.face_model == default else f"{COLLECTION}_{settings.face_model}"


def backend(settings: Settings) -> str:
    """"faiss", "milvus-lite" or "milvus"."""
    uri = settings.vector_uri.strip()
    if not uri:
        return "faiss"
    return "milvus" if uri.startswith(("http://", "https://")) else "milvus-lite"


# ---------------------------------------------------------------------- entry points


def index_path(settings: Settings) -> Path | str:
    """Where the index lives: the FAISS folder (``index_dir``), the milvus-lite path, or the server URI."""
    if backend(settings) == "faiss":
        return settings.index_dir
    return _milvus_uri(settings) if backend(settings) == "milvus" else Path(_milvus_uri(settings))


def load_index(settings: Settings, *, background: bool = False) -> VectorIndex:
    """The configured index as stored, not synced with the database (see `open_index`)."""
    if backend(settings) == "faiss":
        return store_for(settings, background)
    return _milvus(settings)


def check_model(settings: Settings, db: Database) -> None:
    """One model per index: refused if the database holds a face made by another model than the
    active one (`settings.face_model`): its vectors cannot be compared with the active model's."""
    with db.session() as session:
        other = session.scalars(select(Face.model).where(Face.model != settings.face_model).limit(1)).first()
    if other is not None and "face_model" in settings.model_fields_set:
        raise Refused(f"face_model is set to {settings.face_model} (FACETRAIL_FACE_MODEL or facetrail.toml), "
                      f"but the database holds faces of the face model {other}: unset face_model to follow "
                      f"the stored faces' model, set it to {other}, or re-embed the faces with `facetrail "
                      f"reembed --model {settings.face_model}` (docs/models.md)", code="model_mismatch")
    if other is not None:
        raise Refused(f"the database holds faces of the face model {other}, the active model is "
                      f"{settings.face_model}: set face_model back to {other}, or re-embed the faces with "
                      f"the new model first (docs/models.md)", code="model_mismatch")


def open_index(settings: Settings, db: Database, *, background: bool = False) -> VectorIndex:
    """The configured index, brought in step with the database. Upkeep due after the sync (the FAISS
    store's training) runs in a background thread if `background`, else here before returning.
    Refused if the database holds faces of another model than the active one (`check_model`)."""
    check_model(settings, db)
    index = load_index(settings, background=background)
    if backend(settings) == "faiss" and index.owner:
        remove_legacy_files(settings.index_dir)  # a flat index of an earlier version: rebuilt by sync
    with index.maintenance_paused():
        sync(index, db, model=settings.face_model)
    return index


def rebuild(
    settings: Settings, db: Database, progress: Callable[[int], None] | None = None, *, background: bool = False
) -> VectorIndex:
    """Throw the index away and build it again from the database."""
    check_model(settings, db)
    index = load_index(settings, background=background)
    index.reset()
    with index.maintenance_paused():
        sync(index, db, progress, model=settings.face_model)
    index.save()
    return index


def index_status(settings: Settings, db: Database, index: VectorIndex | None = None) -> dict[str, Any]:
    """What the index holds and how: kind, size against the database, training state, memory, files.
    `index`: an index already open (else it is loaded, without a sync)."""
    if index is None:
        index = load_index(settings)
    with db.session() as session:
        db_ids = np.fromiter(session.scalars(select(Face.id)), np.int64)
    held = index.ids()
    status: dict[str, Any] = {
        "backend": backend(settings),
        "location": str(index_path(settings)),
        "kind": index.kind,
        "faces": len(held),
        "database_faces": len(db_ids),
        "in_step": len(held) == len(db_ids) and bool(np.array_equal(np.sort(held), np.sort(db_ids))),
        "exact_limit": settings.exact_limit,
    }
    return status | {k: v for k, v in index.status().items() if k not in status}


__all__ = [
    "FaissIndex",
    "FaissStore",
    "VectorIndex",
    "backend",
    "check_model",
    "index_path",
    "index_status",
    "load_index",
    "open_index",
    "rebuild",
    "sync",
]
