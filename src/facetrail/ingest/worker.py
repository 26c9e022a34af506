"""`facetrail worker`: take files from the ingest queue (see queue.py) and ingest them, batch by
batch, with one pool of analysis processes; between batches, run a batch of a queued re-embed
(reembed.py `ReembedRunner`), so neither starves the other.

Before each batch of files the worker asks which model the stored faces are (`Engines.follow`: a
few indexed lookups). Where face_model is not set and the faces were switched to another model
(`facetrail reembed`), it starts its analysis processes (and, with Milvus, the index) again for
that model before analysing the batch: a batch is analysed by one model, and no face of the old
model is stored once it noticed. Where face_model is set and the database holds faces of another
model, it gives the files in hand back and stops (`model_mismatch`)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Settings
from ..errors import Refused
from ..faces.registry import in_use, pinned
from ..index import check_model
from ..store import Database, Source
from .files import Item
from .pipeline import Ingestor
from .pool import start_pool
from .queue import BATCH, claim, counts, finish, reembed_waiting, release
from .reembed import ReembedRunner


class DatabaseOnly:
    """Stands in for the vector index in workers that share FAISS files with other processes: the
    database is the source of truth, and whoever opens the index next (web app, search, reindex)
    brings it in step. With a Milvus index, workers write to it directly instead."""

    kind = "database-only"
    dim = 128

    def __len__(self) -> int:
        return 0

    def ids(self) -> np.ndarray:
        return np.empty(0, np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        pass

    def remove(self, ids: np.ndarray) -> int:
        return 0

    def search(self, vectors: np.ndarray, k: int):
        raise RuntimeError("a worker does not search")

    def save(self) -> None:
        pass


@dataclass
class WorkerSummary:
    batches: int = 0
    files: int = 0
    images: int = 0
    faces: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def default_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _item(location: str) -> Item:
    path = Path(location)
    try:
        stat = path.stat()
    except OSError:
        return Item(location, 0, 0, path=path)  # reading it fails: stored as unreadable, reason given
    return Item(location, stat.st_size, stat.st_mtime_ns, path=path)


@dataclass
class Engines:
    """What a worker analyses and stores with: the settings of its model, the analysis processes
    (each holding that model's engine) and the index. `follow` replaces them after a switch."""

    settings: Settings
    pool: object
    index: object
    reopen: Callable[[Settings], object] | None = None

    def follow(self, db: Database, log: Callable[[str], None]) -> None:
        """Refused (`model_mismatch`) if face_model is set and the database holds faces of another
        model; where it is not set, the model of the stored faces, loaded anew if it changed."""
        if pinned(self.settings):
            check_model(self.settings, db)
            return
        followed = in_use(self.settings, db)
        if followed.face_model == self.settings.face_model:
            return
        log(f"the stored faces are now {followed.face_model} (was {self.settings.face_model}): loading it "
            "before the next batch")
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.settings = followed
        self.pool = start_pool(followed)
        if self.reopen is not None:
            self.index = self.reopen(followed)


def run_worker(settings: Settings, db: Database, index, name: str, *, batch: int = BATCH,
               lease_seconds: float = 300, until_empty: bool = False, poll_seconds: float = 1.0,
               on_batch: Callable[[WorkerSummary], None] | None = None,
               stop: threading.Event | None = None,
               reopen_index: Callable[[Settings], object] | None = None,
               log: Callable[[str], None] = lambda message: None) -> WorkerSummary:
    """Process queued jobs until `stop` is set (SIGTERM sets it, in the main thread: the batch at
    hand is finished first), Ctrl-C (the batch at hand goes back to the queue at once), or, with
    `until_empty`, until no job or re-embed is queued or leased to a live worker. `reopen_index`:
    the index for another model's settings, after a switch (else `index` is kept: DatabaseOnly).
    Refused (`model_mismatch`, the files in hand given back) when face_model is set and the stored
    faces are another model's."""
    summary = WorkerSummary()
    started = time.monotonic()
    stop = stop or threading.Event()
    on_term = None
    if threading.current_thread() is threading.main_thread():
        on_term = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    engines = Engines(settings, start_pool(settings), index, reopen_index)
    reembedding = ReembedRunner(settings, db, name, lease_seconds, log)
    jobs: list = []
    try:
        engines.follow(db, log)
        while not stop.is_set():
            reembedded = reembedding.step()  # one batch of a queued re-embed between batches of files
            jobs = claim(db, name, batch, lease_seconds)
            if not jobs:
                if reembedded:
                    continue
                with db.session() as session:
                    waiting = counts(session)
                    reembed = reembed_waiting(session)
                if until_empty and waiting["queued"] == waiting["running"] == 0 and not reembed:
                    break
                stop.wait(poll_seconds)
                continue
            engines.follow(db, log)
            with db.session() as session:
                source = session.get(Source, jobs[0].source_id)
            if source is None or source.status != "active":
                finish(db, name, jobs, {job.location: "the source is suspended or removed" for job in jobs})
                jobs = []
                continue
            ingestor = Ingestor(engines.settings, db, engines.index, source, pool=engines.pool)
            done = ingestor.run([_item(job.location) for job in jobs])
            finish(db, name, jobs, {location: reason for location, reason, _ in done.errors})
            jobs = []
            summary.batches += 1
            summary.files += done.files
            summary.images += done.images
            summary.faces += done.faces
            for reason, n in done.skipped.items():
                summary.skipped[reason] = summary.skipped.get(reason, 0) + n
            summary.seconds = time.monotonic() - started
            if on_batch:
                on_batch(summary)
    except (KeyboardInterrupt, Refused):
        if jobs:
            release(db, name, jobs)
        raise
    finally:
        reembedding.release()
        engines.pool.shutdown(wait=False, cancel_futures=True)
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
        summary.seconds = time.monotonic() - started
    return summary
