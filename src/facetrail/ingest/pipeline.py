"""Ingest of one source: items (files, fetched images) -> (process pool) analyze -> database + index.

The stream may also carry `PageRecord`s (the images a web page shows, stored as appearances),
`Skip`s (URLs not fetched, counted by reason) and `None` (nothing new yet: a producer such as a
crawl is still working; finished results are collected meanwhile).

Analysed images are written a few dozen at a time, each batch in one transaction (images,
faces, every location they were found at); the vector index follows the database and is
saved periodically. A crash at any point leaves the database consistent; the index is
brought back in step when next opened, and a rerun skips what is already stored, so nothing
is duplicated.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from ..config import Settings
from ..governance.optout import OptOutCache, OptOutFilter, radii
from ..governance.watches import WatchChecker
from ..images.previews import blur_faces
from ..index import VectorIndex
from ..store import Appearance, Database, Face, Image, Location, Source
from ..store.cleanup import Orphan, delete_unreferenced, drop
from ..store.media import MediaStore
from . import capture
from .analyze import Analysis, analyze_in_worker
from .appearances import Waiting, record_page, settle
from .files import Item, Skip
from .pool import start_pool

CHUNK = 256
STORE_BATCH = 32  # analysed images written per transaction...
STORE_SECONDS = 1.0  # ...or at least this often
INDEX_SAVE_SECONDS = 30.0


@dataclass(frozen=True)
class PageRecord:
    """A web page (crawled or archived) and the image URLs it shows, with their alt text.
    An empty `images` marks every earlier appearance on the page as gone."""

    url: str
    canonical_url: str | None
    title: str
    status: int
    images: tuple[tuple[str, str], ...]  # (image URL, alt text)
    seen: datetime | None = None  # capture date of an archived page (default: now)


@dataclass
class Summary:
    pages: int = 0  # web pages whose images were recorded
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


class Ingestor:
    """Runs one ingest of a source over a stream of items."""

    def __init__(self, settings: Settings, db: Database, index: VectorIndex, source: Source,
                 pool: ProcessPoolExecutor | None = None) -> None:
        """`pool` (from `start_pool`) is kept across runs; without one, each run starts its own."""
        self.settings = settings
        self.pool = pool
        self.db = db
        self.index = index
        self.source_id = source.id
        self.summary = Summary()
        self.media = MediaStore(settings.media_dir)
        self.opt_outs = OptOutCache(radii(settings).block, settings.face_model)  # read again when they changed
        self.watches = WatchChecker(settings, db)  # new faces against the active watches, per batch
        self._pending: dict[str, list[Item]] = {}  # sha256 in flight or not yet stored -> files with those bytes
        self._finished: list[Analysis] = []  # analysed, waiting to be stored (STORE_BATCH at a time)
        self.waiting = Waiting()  # appearances of images whose bytes are not stored yet
        self._last_save = self._last_store = time.monotonic()

    def run(self, entries: Iterable[Item | PageRecord | Skip | None],
            on_file: Callable[[], None] | None = None) -> Summary:
        """Ingest every item; `on_file` is called once per item finished (for progress bars)."""
        started = time.monotonic()
        tick = on_file or (lambda: None)
        workers = self.settings.workers
        pool = self.pool or start_pool(self.settings)
        futures: dict[Future[Analysis], tuple[str, Item]] = {}
        try:
            for chunk in self._batches(entries):
                for entry, data, sha in self._triage(chunk, tick):
                    if sha in self._pending:
                        self._pending[sha].append(entry)
                        continue
                    self._pending[sha] = [entry]
                    futures[pool.submit(analyze_in_worker, data)] = (sha, entry)
                    while len(futures) >= workers * 4:
                        self._collect(futures, tick, block=True)
                if futures:
                    self._collect(futures, tick, block=False)
            while futures:
                self._collect(futures, tick, block=True)
            self._store_finished(tick)
        except KeyboardInterrupt:
            self._store_finished(tick)  # keep what was analysed
            raise
        finally:
            self.waiting.drop_all()  # images never fetched or stored: no appearance
            if self.pool is None:
                pool.shutdown(wait=True, cancel_futures=True)
            self.index.save()
            self.summary.seconds = time.monotonic() - started
        return self.summary

    def _batches(self, stream: Iterable[Item | PageRecord | Skip | None]) -> Iterator[list[Item]]:
        """Items in lists of up to CHUNK; pages and skips are stored on the way; None ends a list early."""
        batch: list[Item] = []
        for element in stream:
            if isinstance(element, Item):
                batch.append(element)
                if len(batch) < CHUNK:
                    continue
            elif isinstance(element, PageRecord):
                self._store_page(element)
                continue
            elif isinstance(element, Skip):
                self._store_skip(element)
                continue
            yield batch
            batch = []
        if batch:
            yield batch

    def _triage(self, chunk: list[Item], tick: Callable[[], None]) -> Iterator[tuple[Item, bytes, str]]:
        """Settle unchanged files and known bytes at once; yield (item, bytes, sha256) to analyze."""
        self.summary.files += len(chunk)
        now = _now()
        files = [e.location for e in chunk if e.data is None]  # fetched bytes are compared by sha256
        in_source = Location.source_id == self.source_id
        with self.db.session() as session:
            known = {
                row.location: row
                for row in session.execute(
                    select(Location.location, Location.size, Location.mtime_ns).where(
                        in_source, Location.location.in_(files)
                    )
                )
            } if files else {}
            unchanged = [
                e.location
                for e in chunk
                if (row := known.get(e.location)) and row.size == e.size and row.mtime_ns == e.mtime_ns
            ]
            if unchanged:
                session.execute(
                    update(Location).where(in_source, Location.location.in_(unchanged)).values(last_seen=now)
                )
                session.execute(
                    update(Image)
                    .where(Image.id.in_(select(Location.image_id).where(
                        in_source, Location.location.in_(unchanged))))
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
            if entry.data is None and entry.size > self.settings.max_image_bytes:  # never read into memory
                self._store_error(entry, "too_large", f"{entry.size} bytes is over the limit of "
                                  f"{self.settings.max_image_bytes}")
                tick()
                continue
            try:
                data = entry.read()
            except OSError as exc:
                self._store_error(entry, "unreadable", f"cannot read: {exc.strerror or exc}")
                tick()
                continue
            sha = hashlib.sha256(data).hexdigest()
            with self.db.session() as session:
                here = select(Location.id).where(Location.source_id == self.source_id,
                                                 Location.location == entry.location, Location.image_id == Image.id)
                known = session.execute(select(Image.id, here.exists()).where(Image.sha256 == sha)).first()
            image_id, same = known or (None, False)
            if image_id is not None:
                self._store_locations(image_id, [entry])
                if same:  # fetched again, the same bytes at the same URL
                    self.summary.unchanged += 1
                else:
                    self.summary.duplicates += 1
                tick()
                continue
            yield entry, data, sha

    def _collect(self, futures: dict[Future[Analysis], tuple[str, Item]], tick, block: bool) -> None:
        done, _ = wait(list(futures), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            sha, entry = futures.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OOM killer
                result = Analysis(error="failed", message=f"{type(exc).__name__}: {exc}")
            if not result.error:  # stays pending (later files with the same bytes join it) until stored
                self._finished.append(result)
                continue
            for e in self._pending.pop(sha):
                self._store_error(e, result.error, result.message)
                tick()
        if len(self._finished) >= STORE_BATCH or time.monotonic() - self._last_store > STORE_SECONDS:
            self._store_finished(tick)
        if time.monotonic() - self._last_save > INDEX_SAVE_SECONDS:
            self.index.save()
            self._last_save = time.monotonic()

    def _store_finished(self, tick: Callable[[], None]) -> None:
        """Write the analysed images waiting in `_finished`, in one transaction."""
        with self.db.session() as session:
            opt_outs = self.opt_outs.get(session)
        batch = [(self._without_opted_out(result, opt_outs), self._pending.pop(result.sha256))
                 for result in self._finished]
        self._finished = []
        self._last_store = time.monotonic()
        if not batch:
            return
        for result, _ in batch:
            self.media.save(result.sha256, result.thumbnail, result.crops)  # before the commit that refers to them
        try:
            self._insert_images(batch)
        except IntegrityError:  # another process stored some of these bytes meanwhile: one at a time
            for result, entries in batch:
                try:
                    self._insert_images([(result, entries)])
                except IntegrityError:  # one image, more locations
                    with self.db.session() as session:
                        image_id = session.scalar(select(Image.id).where(Image.sha256 == result.sha256))
                    if image_id is None:
                        raise
                    self._store_locations(image_id, entries)
                    self.summary.duplicates += len(entries)
        for _, entries in batch:
            for _ in entries:
                tick()

    def _without_opted_out(self, result: Analysis, opt_outs: OptOutFilter) -> Analysis:
        """The analysis without faces that match an opt-out (blocking radius): never stored, nor their
        crops; blurred in the thumbnail; the image left out of copy search, and out of the source's
        captures (the crawl kept the original bytes as it fetched them: capture.py)."""
        if not result.faces:
            return result
        blocked = opt_outs.blocked(np.stack([f.embedding for f in result.faces]))
        if not blocked.any():
            return result
        self.summary.opted_out += int(blocked.sum())
        capture.forget(self.settings, {result.sha256}, self.source_id)
        keep = [i for i, b in enumerate(blocked) if not b]
        thumbnail = blur_faces(result.thumbnail, (result.width, result.height),
                               [f.box for f, b in zip(result.faces, blocked) if b])
        return replace(result, faces=[result.faces[i] for i in keep], crops=[result.crops[i] for i in keep],
                       thumbnail=thumbnail, copy_hash=None)  # nor can copy search lead to the photo

    def _insert_images(self, batch: list[tuple[Analysis, list[Item]]]) -> None:
        """Images, their faces and locations in one transaction; then the index follows."""
        with self.db.session() as session, session.begin():
            image_rows = []
            for result, entries in batch:
                seen = min([e.seen for e in entries if e.seen] + [_now()])
                image_rows.append(dict(
                    sha256=result.sha256, bytes=result.bytes, width=result.width, height=result.height,
                    format=result.format, copy_hash=result.copy_hash, first_seen=seen, last_seen=seen))
            image_ids = session.scalars(
                insert(Image).returning(Image.id, sort_by_parameter_order=True), image_rows).all()
            face_rows = [
                dict(image_id=image_id, idx=i, left=f.box[0], top=f.box[1], right=f.box[2], bottom=f.box[3],
                     score=f.score, detector=f.detector, landmarks=[list(p) for p in f.landmarks],
                     model=result.model, embedding=np.asarray(f.embedding, np.float32).tobytes())
                for image_id, (result, _) in zip(image_ids, batch)
                for i, f in enumerate(result.faces)
            ]
            face_ids = session.scalars(
                insert(Face).returning(Face.id, sort_by_parameter_order=True), face_rows).all() if face_rows else []
            orphans = self._upsert_locations(
                session, [(image_id, e) for image_id, (_, entries) in zip(image_ids, batch) for e in entries])
        # committed: the index follows
        if face_ids:
            vectors = np.stack([f.embedding for result, _ in batch for f in result.faces]).astype(np.float32)
            self.index.add(np.array(face_ids, np.int64), vectors)
            self.watches.check(face_ids, [row["image_id"] for row in face_rows], vectors)
        drop(orphans, self.index, self.media)
        self.summary.images += len(batch)
        self.summary.faces += len(face_ids)
        self.summary.duplicates += sum(len(entries) - 1 for _, entries in batch)

    def _store_locations(self, image_id: int, entries: list[Item]) -> None:
        with self.db.session() as session, session.begin():
            orphans = self._upsert_locations(session, [(image_id, e) for e in entries])
            seen = max(e.seen or _now() for e in entries)
            session.execute(update(Image).where(Image.id == image_id, Image.last_seen < seen).values(last_seen=seen))
        drop(orphans, self.index, self.media)

    def _store_error(self, entry: Item, reason: str, message: str) -> None:
        with self.db.session() as session, session.begin():
            orphans = self._upsert_locations(session, [(None, entry)], error=reason)
        drop(orphans, self.index, self.media)
        self.summary.skipped[reason] += 1
        self.summary.errors.append((entry.location, reason, message))

    def _upsert_locations(self, session, placed: list[tuple[int | None, Item]],
                          error: str | None = None) -> list[Orphan]:
        """Point each location of this source at its image (None: unusable, `error` says why).
        Images no longer found anywhere are deleted here, in the caller's transaction; returns
        them for `drop` after the commit."""
        in_source = Location.source_id == self.source_id
        rows: dict[str, Location] = {}
        wanted = [entry.location for _, entry in placed]
        for at in range(0, len(wanted), 500):
            rows.update((row.location, row) for row in session.scalars(
                select(Location).where(in_source, Location.location.in_(wanted[at:at + 500]))))
        previous: set[int] = set()
        new = []
        for image_id, entry in placed:
            seen = entry.seen or _now()
            row = rows.get(entry.location)
            if row is None:
                new.append(dict(source_id=self.source_id, location=entry.location, image_id=image_id,
                                size=entry.size, mtime_ns=entry.mtime_ns, error=error, status=entry.status,
                                gone=False, first_seen=seen, last_seen=seen))
                continue
            if row.image_id is not None and row.image_id != image_id:
                previous.add(row.image_id)
            row.image_id, row.size, row.mtime_ns, row.error, row.status, row.gone = (
                image_id, entry.size, entry.mtime_ns, error, entry.status, False)
            row.first_seen, row.last_seen = min(row.first_seen, seen), max(row.last_seen, seen)
        if new:
            session.execute(insert(Location), new)
        for image_id, entry in placed:
            settle(session, self.source_id, self.waiting, entry.location, stored=image_id is not None)
        session.flush()
        return delete_unreferenced(session, previous)

    def _store_page(self, page: PageRecord) -> None:
        """Record the images a page shows (`appearances.record_page`): those whose bytes are not
        stored yet wait for them; earlier appearances on it that it no longer shows are gone."""
        with self.db.session() as session, session.begin():
            record_page(session, self.source_id, page, self.waiting, _now())
        self.summary.pages += 1

    def _store_skip(self, skip: Skip) -> None:
        """Count a URL that was not fetched; a page or image that is not found any more is gone."""
        self.summary.skipped[skip.reason] += 1
        self.summary.errors.append((skip.location, skip.reason, skip.message))
        if skip.status not in (404, 410):
            return
        with self.db.session() as session, session.begin():
            session.execute(update(Appearance).where(
                Appearance.source_id == self.source_id, Appearance.page_url == skip.location).values(gone=True))
            session.execute(update(Location).where(
                Location.source_id == self.source_id, Location.location == skip.location).values(gone=True))

