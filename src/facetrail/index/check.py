"""Consistency check: the database, the vector index and the media folder agree."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, select

from ..config import Settings
from . import load_index, sync
from ..store import Database, Face, Image, Location
from ..store.media import MediaStore


@dataclass
class Report:
    faces: int = 0
    index_size: int = 0
    missing_from_index: int = 0  # faces in the database, not in the index
    stale_in_index: int = 0  # ids in the index with no face in the database
    orphan_images: int = 0  # images no longer found at any location
    orphan_media: int = 0  # media files of no stored image
    missing_media: int = 0  # stored images without a thumbnail (informational)
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not (self.missing_from_index or self.stale_in_index or self.orphan_images or self.orphan_media)


def check(settings: Settings, db: Database, repair: bool = False) -> Report:
    """Find disagreements; with `repair`, fix them, taking the database as the truth."""
    index = load_index(settings)
    media = MediaStore(settings.media_dir)
    with db.session() as session:
        db_ids = np.fromiter(session.scalars(select(Face.id)), np.int64)
        shas = set(session.scalars(select(Image.sha256)))
        located = select(Location.image_id).where(Location.image_id.is_not(None))
        orphans = list(session.scalars(select(Image.id).where(Image.id.not_in(located))))
    held = index.ids()
    on_disk = media.files_by_sha()
    report = Report(
        faces=len(db_ids),
        index_size=len(held),
        missing_from_index=len(np.setdiff1d(db_ids, held)),
        stale_in_index=len(np.setdiff1d(held, db_ids)),
        orphan_images=len(orphans),
        orphan_media=sum(len(files) for sha, files in on_disk.items() if sha not in shas),
        missing_media=sum(1 for sha in shas if sha not in on_disk),
    )
    if repair and not report.ok:
        with db.session() as session, session.begin():
            session.execute(delete(Face).where(Face.image_id.in_(orphans)))
            session.execute(delete(Image).where(Image.id.in_(orphans)))
            shas = set(session.scalars(select(Image.sha256)))
        for sha, files in on_disk.items():
            if sha not in shas:
                for path in files:
                    path.unlink(missing_ok=True)
        sync(index, db)
        index.save()
        report.repaired = True
    return report
