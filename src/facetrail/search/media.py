"""The stored preview files of a search result, found by database id.

Results name faces and images by id; the files are named by the image's sha256 (see
store/media.py), so the outside world never chooses a path. Who may see a file is the
caller's check (the web app serves them to accounts that may search).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from ..store import Database, Face, Image
from ..store.media import MediaStore


def face_crop(db: Database, media: MediaStore, face_id: int) -> Path | None:
    """The crop of face `face_id`, or None if there is no such face or file."""
    with db.session() as session:
        row = session.execute(
            select(Image.sha256, Face.idx).join(Face, Face.image_id == Image.id).where(Face.id == face_id)
        ).first()
    return _existing(row and media.crop_path(row.sha256, row.idx))


def thumbnail(db: Database, media: MediaStore, image_id: int) -> Path | None:
    """The thumbnail of image `image_id`, or None if there is no such image or file."""
    with db.session() as session:
        sha = session.scalar(select(Image.sha256).where(Image.id == image_id))
    return _existing(sha and media.thumb_path(sha))


def _existing(path: Path | None) -> Path | None:
    return path if path and path.is_file() else None
