"""Evidence packages on the web: `POST /api/v1/searches/{id}/evidence` and
`POST /api/v1/cases/{id}/evidence` answer a signed WACZ file (search/evidence.py). The results and
case pages post their "Export evidence" forms here (a browser session sends its CSRF token as the
form field, like every other form); a search or case the caller may not see answers 404."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ..search import evidence
from . import deps
from .deps import Caller

router = APIRouter(prefix="/api/v1", tags=["evidence"])
WACZ = {200: {"content": {evidence.MEDIA_TYPE: {}}, "description": "The signed WACZ package"}}
Photo = Annotated[UploadFile | None, File(description="Optional: the photo searched with, to include it (only "
                                                      "its sha256 is in the package otherwise)")]


def _answer(package: evidence.Package) -> Response:
    return Response(package.data, media_type=evidence.MEDIA_TYPE, headers={
        "Content-Disposition": f'attachment; filename="{package.filename}"',
        "X-Package-SHA256": package.sha256, "Cache-Control": "no-store"})


async def _photo(request: Request, query_photo: UploadFile | None) -> bytes | None:
    if query_photo is None or not query_photo.filename:
        return None  # a form's empty file field
    return await deps.read_upload(request, query_photo)


@router.post("/searches/{search_id}/evidence", response_class=Response, responses=WACZ)
async def search_evidence(request: Request, search_id: int, actor: Caller, query_photo: Photo = None) -> Response:
    """A signed evidence package (WACZ) of a search you may see: its results, captures, crops, the
    query's sha256, its audit entries with inclusion proofs, approval, confirmations and a CASE/UCO
    description. Recorded (`evidence.export`)."""
    photo = await _photo(request, query_photo)
    package = await run_in_threadpool(evidence.export_search, deps.searcher(request), actor, search_id, photo)
    return _answer(package)


@router.post("/cases/{case_id}/evidence", response_class=Response, responses=WACZ)
async def case_evidence(request: Request, case_id: int, actor: Caller, query_photo: Photo = None) -> Response:
    """A signed evidence package of every search of a case you may see (members, supervisors,
    auditors). Recorded (`evidence.export`)."""
    photo = await _photo(request, query_photo)
    searcher = deps.searcher(request)

    def work() -> evidence.Package:
        return evidence.export_case(searcher, actor, evidence.case_ref_of(searcher, actor, case_id), photo)

    return _answer(await run_in_threadpool(work))
