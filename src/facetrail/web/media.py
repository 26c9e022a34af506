"""Face crops and thumbnails of search results, served by database id to those who may search."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from ..errors import Refused
from ..search import media as files
from . import deps
from .deps import MaySearch

router = APIRouter(prefix="/media", include_in_schema=False)


@router.get("/faces/{face_id}.jpg")
def face_crop(request: Request, face_id: int, actor: MaySearch) -> FileResponse:
    return _jpeg(files.face_crop(deps.database(request), deps.media(request), face_id))


@router.get("/images/{image_id}.jpg")
def thumbnail(request: Request, image_id: int, actor: MaySearch) -> FileResponse:
    return _jpeg(files.thumbnail(deps.database(request), deps.media(request), image_id))


def _jpeg(path: Path | None) -> FileResponse:
    if path is None:
        raise Refused("not found", "not_found")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
