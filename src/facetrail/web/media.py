"""Face crops and thumbnails, served only as results of a search the caller may see now.

`/api/v1/searches/{search_id}/faces/{face_id}.jpg` and `.../images/{image_id}.jpg`: anything
else (someone else's search, a search held for prior approval, an id not among its results,
an unknown or out-of-range id) answers the same 404 as a route that does not exist.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from ..errors import Refused
from ..search import media as files
from . import deps
from .deps import Caller

router = APIRouter(prefix="/api/v1/searches", tags=["search"])
JPEG = {200: {"content": {"image/jpeg": {}}, "description": "The JPEG file"}}


@router.get("/{search_id}/faces/{face_id}.jpg", response_class=FileResponse, responses=JPEG)
def face_crop(request: Request, search_id: int, face_id: int, actor: Caller) -> FileResponse:
    """The crop of a face among the results of a search you may see now."""
    return _jpeg(files.face_crop(deps.searcher(request), deps.media(request), actor, search_id, face_id))


@router.get("/{search_id}/images/{image_id}.jpg", response_class=FileResponse, responses=JPEG)
def thumbnail(request: Request, search_id: int, image_id: int, actor: Caller) -> FileResponse:
    """The thumbnail of an image among the results of a search you may see now."""
    return _jpeg(files.thumbnail(deps.searcher(request), deps.media(request), actor, search_id, image_id))


def _jpeg(path: Path | None) -> FileResponse:
    if path is None:
        raise Refused("Not Found", "not_found")  # the very answer of a route that does not exist
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"})
