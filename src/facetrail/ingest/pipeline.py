"""Folder ingest: files -> (process pool) analyze -> database + vector index.

Each image is written in one transaction (image, faces, every location it was found at);
the vector index follows the database and is saved periodically. A crash at any point
leaves the database consistent; the index is brought back in step when next opened, and
a rerun skips what is already stored, so nothing is duplicated.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import islice

import numpy as np
from sqlalchemy import delete, func, select, update

from ..config import Settings
from ..governance.optout import OptOutFilter
from ..index import VectorIndex
from ..store import Database, Face, Image, Location
from ..store.media import MediaStore
from .analyze import Analysis, analyze_in_worker, init_worker
from .files import FileEntry

CHUNK = 256
INDEX_SAVE_SECONDS = 30.0


@dataclass
class Summary:
    files: int = 0
    images: int = 0  # new distinct images stored
    faces: int = 0  # faces in those images
    duplicates: int = 0  # files whose exact bytes were already stored
    unchanged: int = 0  # files skipped because they did not change since the last run
    opted_out: int = 0  # faces not stored because they match an opt-out
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (location, reason, message)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        processed = self.images + self.duplicates + sum(self.skipped.values())
        return processed / self.seconds if self.seconds else 0.0


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(items: Iterable[FileEntry], size: int) -> Iterator[list[FileEntry]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _ignore_sigint_then_init(settings: Settings) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    init_worker(settings)


class Ingestor:
    """Runs one ingest over a stream of files."""

    def __init__(self, settings: Settings, db: Database, index: VectorIndex) -> None:
        self.settings = settings
        self.db = db
        self.index = index
        self.summary = Summary()
        self.media = MediaStore(settings.media_dir)
        with db.session() as session:
            self.opt_outs = OptOutFilter.load(session, settings.match_threshold)
        self._pending: dict[str, list[FileEntry]] = {}  # sha256 in flight -> files with those bytes
        self._last_save = time.monotonic()

    def run(self, entries: Iterable[FileEntry], on_file: Callable[[], None] | None = None) -> Summary:
        """Ingest every entry; `on_file` is called once per file finished (for progress bars)."""
        started = time.monotonic()
        tick = on_file or (lambda: None)
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["facetrail.ingest.analyze"])
        workers = self.settings.workers
        pool = ProcessPoolExecutor(workers, context, _ignore_sigint_then_init, (self.settings,))
        for _ in range(workers):  # start the workers (and load their models) while files are read
            pool.submit(int)
        futures: dict[Future[Analysis], tuple[str, FileEntry]] = {}
        try:
            for chunk in _chunks(entries, CHUNK):
                for entry, data, sha in self._triage(chunk, tick):
                    if sha in self._pending:
                        self._pending[sha].append(entry)
                        continue
                    self._pending[sha] = [entry]
                    futures[pool.submit(analyze_in_worker, data)] = (sha, entry)
                    while len(futures) >= workers * 4:
                        self._collect(futures, tick, block=True)
            while futures:
                self._collect(futures, tick, block=True)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.index.save()
            self.summary.seconds = time.monotonic() - started
        return self.summary

    def _triage(self, chunk: list[FileEntry], tick: Callable[[], None]) -> Iterator[tuple[FileEntry, bytes, str]]:
        """Settle unchanged files and known bytes at once; yield (entry, bytes, sha256) to analyze."""
        self.summary.files += len(chunk)
        now = _now()
        with self.db.session() as session:
            known = {
                row.location: row
                for row in session.execute(
                    select(Location.location, Location.size, Location.mtime_ns).where(
                        Location.location.in_([e.location for e in chunk])
                    )
                )
            }
            unchanged = [
                e.location
                for e in chunk
                if (row := known.get(e.location)) and row.size == e.size and row.mtime_ns == e.mtime_ns
            ]
            if unchanged:
                session.execute(
                    update(Location).where(Location.location.in_(unchanged)).values(last_seen=now)
                )
                session.execute(
                    update(Image)
                    .where(Image.id.in_(select(Location.image_id).where(Location.location.in_(unchanged))))
                    .values(last_seen=now)
                )
                session.commit()
        self.summary.unchanged += len(unchanged)
        for _ in unchanged:
            tick()
        skip = set(unchanged)
        for entry in chunk:
            if entry.location in skip:
                continue
            try:
                data = entry.path.read_bytes()
            except OSError as exc:
                self._store_error(entry, "unreadable", f"cannot read: {exc.strerror or exc}")
                tick()
                continue
            sha = hashlib.sha256(data).hexdigest()
            with self.db.session() as session:
                image_id = session.scalar(select(Image.id).where(Image.sha256 == sha))
            if image_id is not None:
                self._store_locations(image_id, [entry])
                self.summary.duplicates += 1
                tick()
                continue
            yield entry, data, sha

    def _collect(self, futures: dict[Future[Analysis], tuple[str, FileEntry]], tick, block: bool) -> None:
        done, _ = wait(list(futures), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            sha, entry = futures.pop(future)
            entries = self._pending.pop(sha)
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OOM killer
                result = Analysis(error="failed", message=f"{type(exc).__name__}: {exc}")
            if result.error:
                for e in entries:
                    self._store_error(e, result.error, result.message)
            else:
                self._store_image(result, entries)
            for _ in entries:
                tick()
        if time.monotonic() - self._last_save > INDEX_SAVE_SECONDS:
            self.index.save()
            self._last_save = time.monotonic()

    def _store_image(self, result: Analysis, entries: list[FileEntry]) -> None:
        now = _now()
        if result.faces:
            blocked = self.opt_outs.blocked(np.stack([f.embedding for f in result.faces]))
            if blocked.any():  # opted-out faces are never stored, nor their crops
                self.summary.opted_out += int(blocked.sum())
                keep = [i for i, b in enumerate(blocked) if not b]
                result = replace(result, faces=[result.faces[i] for i in keep], crops=[result.crops[i] for i in keep])
        self.media.save(result.sha256, result.thumbnail, result.crops)  # before the commit that refers to them
        with self.db.session() as session, session.begin():
            image = Image(
                sha256=result.sha256,
                bytes=result.bytes,
                width=result.width,
                height=result.height,
                format=result.format,
                first_seen=now,
                last_seen=now,
            )
            session.add(image)
            rows = [
                Face(
                    image=image,
                    idx=i,
                    left=f.box[0],
                    top=f.box[1],
                    right=f.box[2],
                    bottom=f.box[3],
                    score=f.score,
                    detector=f.detector,
                    landmarks=[list(p) for p in f.landmarks],
                    model=result.model,
                    embedding=np.asarray(f.embedding, np.float32).tobytes(),
                )
                for i, f in enumerate(result.faces)
            ]
            session.add_all(rows)
            session.flush()
            orphans = self._upsert_locations(session, image.id, entries, now)
            face_ids = np.array([r.id for r in rows], np.int64)
        # committed: the index follows
        if len(face_ids):
            self.index.add(face_ids, np.stack([f.embedding for f in result.faces]).astype(np.float32))
        self._drop(orphans)
        self.summary.images += 1
        self.summary.faces += len(rows)
        self.summary.duplicates += len(entries) - 1

    def _store_locations(self, image_id: int, entries: list[FileEntry]) -> None:
        with self.db.session() as session, session.begin():
            orphans = self._upsert_locations(session, image_id, entries, _now())
            session.execute(update(Image).where(Image.id == image_id).values(last_seen=_now()))
        self._drop(orphans)

    def _store_error(self, entry: FileEntry, reason: str, message: str) -> None:
        with self.db.session() as session, session.begin():
            orphans = self._upsert_locations(session, None, [entry], _now(), error=reason)
        self._drop(orphans)
        self.summary.skipped[reason] += 1
        self.summary.errors.append((entry.location, reason, message))

    def _upsert_locations(
        self, session, image_id: int | None, entries, now, error: str | None = None
    ) -> list[tuple[str, list[int]]]:
        """Point each location at image_id. Returns (sha256, face ids) of images no longer found
        anywhere; their rows are deleted here, in the caller's transaction."""
        previous: set[int] = set()
        for entry in entries:
            row = session.scalar(select(Location).where(Location.location == entry.location))
            if row is None:
                session.add(
                    Location(
                        location=entry.location,
                        image_id=image_id,
                        size=entry.size,
                        mtime_ns=entry.mtime_ns,
                        error=error,
                        first_seen=now,
                        last_seen=now,
                    )
                )
                continue
            if row.image_id is not None and row.image_id != image_id:
                previous.add(row.image_id)
            row.image_id, row.size, row.mtime_ns, row.error, row.last_seen = (
                image_id,
                entry.size,
                entry.mtime_ns,
                error,
                now,
            )
        session.flush()
        orphans = []
        for old in previous:
            if not session.scalar(select(func.count()).select_from(Location).where(Location.image_id == old)):
                sha = session.scalar(select(Image.sha256).where(Image.id == old))
                orphans.append((sha, list(session.scalars(select(Face.id).where(Face.image_id == old)))))
                session.execute(delete(Face).where(Face.image_id == old))
                session.execute(delete(Image).where(Image.id == old))
        return orphans

    def _drop(self, orphans: list[tuple[str, list[int]]]) -> None:
        """After the commit: take deleted images' faces out of the index and their media off disk."""
        for sha, face_ids in orphans:
            if face_ids:
                self.index.remove(np.array(face_ids, np.int64))
            self.media.delete(sha, len(face_ids))
