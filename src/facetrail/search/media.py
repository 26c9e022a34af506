"""The stored preview files of a search result, for someone who may see that search now.

A face crop or thumbnail is only ever shown as part of a search result: the caller names the
search, and the file is found only if the face or image is among the results that search shows
them now (`Searcher.shown_media`, which asks rules.visible_search). Files are named by the
image's sha256 (see store/media.py), so the outside world never chooses a path.
"""

from __future__ import annotations

from pathlib import Path

from ..governance.actors import Actor
from ..store.media import MediaStore
from .service import Searcher


def face_crop(searcher: Searcher, media: MediaStore, actor: Actor, search_id: int, face_id: int) -> Path | None:
    """The crop of face `face_id` as a result of search `search_id`, or None (no such face, not
    among the results that search shows `actor` now, or no file)."""
    face = searcher.shown_media(actor, search_id).faces.get(face_id)
    return _existing(face and media.crop_path(*face))


def thumbnail(searcher: Searcher, media: MediaStore, actor: Actor, search_id: int, image_id: int) -> Path | None:
    """The thumbnail of image `image_id` as a result of search `search_id`, or None."""
    sha = searcher.shown_media(actor, search_id).images.get(image_id)
    return _existing(sha and media.thumb_path(sha))


def _existing(path: Path | None) -> Path | None:
    return path if path and path.is_file() else None
