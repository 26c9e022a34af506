"""The JSON API under /api/v1 (OpenAPI is its contract), and /healthz.

Each route turns a request into one service call and its result into JSON; refusals are
raised as `Refused` and answered by the app's one error handler (web/errors.py).
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, File, Form, Request, UploadFile
from pydantic import BaseModel, Field

from ..errors import Refused
from ..images.previews import make_crop
from ..search import check_request
from ..search.opt_out import RECEIVED as OPT_OUT_RECEIVED
from ..search.service import MAX_QUERY_PHOTOS
from ..search.service import confirm_match as confirm
from ..search.stats import counts
from . import cpu, deps
from .deps import Caller, MayApprove, MaySearch
from .errors import explain

router = APIRouter()


class ConfirmationIn(BaseModel):
    search_id: int = Field(description="The audit id of the search that showed the face")
    face_id: int = Field(description="The result's face_id")


class DecisionIn(BaseModel):
    decision: Literal["approve", "deny"]
    reason: str = Field(min_length=1, description="Why (recorded)")


@router.get("/healthz", tags=["service"])
async def healthz() -> dict:
    """Answered on the event loop itself: a liveness probe must not queue for a free thread of the
    pool that runs the synchronous handlers (database reads, pages) behind 50 busy clients."""
    return {"status": "ok"}


@router.get("/api/v1/stats", tags=["service"])
def stats(request: Request, actor: Caller) -> dict:
    """How much is indexed; for admins and auditors also the opt-out totals of each day that has ended."""
    return counts(deps.database(request), deps.searcher(request).index, actor)


@router.post("/api/v1/faces", tags=["search"])
async def faces(
    request: Request,
    image: Annotated[UploadFile, File(description="A photo")],
    actor: MaySearch,
) -> dict:
    """The faces in an uploaded photo, largest first, each with a small crop (data URL).

    This does not search the index and is not recorded; the photo is not kept."""
    data = await deps.read_upload(request, image)
    return await cpu.run(request, faces_of, deps.searcher(request), data)  # decode, detect, embed: off the loop


def faces_of(searcher, data: bytes) -> dict:
    decoded, found = searcher.faces_in(data)
    return {
        "width": decoded.width,
        "height": decoded.height,
        "faces": [
            {
                "index": i,
                "box": list(f.box),
                "size": f.size,
                "crop_url": "data:image/jpeg;base64,"
                + base64.b64encode(make_crop(decoded.pixels, f.scaled(decoded.scale).box, 96)).decode(),
            }
            for i, f in enumerate(found)
        ],
    }


@router.post("/api/v1/search", tags=["search"])
async def search(
    request: Request,
    image: Annotated[list[UploadFile], File(description="The query photo; repeated (1-10): photos of one person, "
                                                        "each result matched against the nearest")],
    actor: MaySearch,
    purpose: Annotated[str, Form(description="Purpose category, one of the configured list (recorded)")] = "",
    justification: Annotated[str, Form(description="Why this search is needed (recorded)")] = "",
    case_ref: Annotated[str, Form(description="Case reference (recorded)")] = "",
    face: Annotated[list[int] | None, Form(description="Which face of each photo (repeated, in the photos' "
                                                          "order); default the largest")] = None,
    top_k: Annotated[int | None, Form(ge=1, le=1000, description="Number of results")] = None,
    threshold: Annotated[float | None, Form(gt=0, le=2, description="Largest distance reported")] = None,
    urgent: Annotated[bool, Form(description="Urgent: results at once, approval due within 48 h")] = False,
    mode: Annotated[
        Literal["faces", "copies"],
        Form(description="faces: where the person appears; copies: copies of this very photo"),
    ] = "faces",
) -> dict:
    """Search for the person in the photo (or copies of the photo: `mode=copies`). The same result
    object as `facetrail search --json`, plus `crop_url` and `thumb_url` for each result (copies:
    `thumb_url`). Every search is written to the audit log."""
    check_request(deps.settings(request), actor, purpose, justification, case_ref, urgent)  # before the upload
    if not 1 <= len(image) <= MAX_QUERY_PHOTOS or (mode == "copies" and len(image) > 1):
        raise Refused(f"Send 1 to {MAX_QUERY_PHOTOS} photos of one person (a copy search takes one).",
                      "too_many_photos")
    if face is not None and len(face) not in (1, len(image)):
        raise Refused("Give one face number per photo.", "no_such_face")
    photos = await deps.read_uploads(request, image)
    searcher = deps.searcher(request)
    if mode == "copies":  # decode, detect, embed, index search and the audit entry: in the CPU pool
        result = await cpu.run(request, searcher.copies, photos[0], actor=actor, purpose=purpose,
                               justification=justification, case_ref=case_ref, top_k=top_k, name=image[0].filename)
    else:
        one = len(photos) == 1
        result = await cpu.run(request, searcher.search, photos[0] if one else photos, actor=actor, purpose=purpose,
                               justification=justification, case_ref=case_ref,
                               face=(face[0] if face else None) if one else (face or None), top_k=top_k,
                               threshold=threshold, name=image[0].filename if one else [i.filename for i in image],
                               urgent=urgent)
    if result.error_code == "no_face":
        raise Refused("No face was found in this photo. Try a clearer, larger photo of the face.", "no_face")
    if result.error:
        raise Refused(explain(result.error_code, result.error), result.error_code)
    return with_media_urls(result.to_dict())


@router.get("/api/v1/searches/{search_id}", tags=["search"])
def search_results(request: Request, search_id: int, actor: MaySearch) -> dict:
    """An earlier search's results (for its requester or a supervisor): for a search awaiting
    prior approval, none until it is approved."""
    return with_media_urls(deps.searcher(request).results_of(actor, search_id).to_dict())


def with_media_urls(body: dict) -> dict:
    """Each result's crop and thumbnail, under its search's own URL (web/media.py)."""
    search = f"/api/v1/searches/{body['audit_id']}"
    for item in body["results"]:
        item["crop_url"] = f"{search}/faces/{item['face_id']}.jpg"
        item["thumb_url"] = f"{search}/images/{item['image']['id']}.jpg"
    for item in body.get("copies", []):
        item["thumb_url"] = f"{search}/images/{item['image']['id']}.jpg"
    return body


@router.get("/api/v1/approvals", tags=["approvals"])
def approval_queue(request: Request, actor: MayApprove) -> list[dict]:
    """Searches waiting for a supervisor: prior ones withhold results; review and urgent ones
    were shown and need a review (urgent ones by their due time)."""
    return deps.approval_queue(request)


@router.post("/api/v1/approvals/{approval_id}", tags=["approvals"])
async def approval_decision(
    request: Request, approval_id: int, body: DecisionIn, actor: MayApprove
) -> dict:
    """Approve or deny a search, with a reason. Nobody decides on their own search."""
    return await cpu.run(request, deps.searcher(request).decide, actor, approval_id,  # approving searches the index
                         body.decision == "approve", body.reason)


@router.post("/api/v1/opt-out", tags=["opt-out"])
async def opt_out_api(
    request: Request,
    image: Annotated[list[UploadFile], File(description="Photos of your face: 1 to 10, the field repeated "
                                                         "(three or more, from different days and angles)")],
    later: BackgroundTasks,
    statement: Annotated[str, Form(description='"yes": this is me and I ask to be removed')] = "",
    contact: Annotated[str, Form(description="Optional contact")] = "",
) -> dict:
    """Remove your face from the index, now and in future. No account needed; rate-limited.
    The answer is the same, in the same time, whether or not your face was in the index."""
    await deps.take_opt_out(request, image, statement, contact, later)
    return {"status": "received", "message": OPT_OUT_RECEIVED}


@router.post("/api/v1/confirmations", tags=["search"])
def confirm_match(request: Request, body: ConfirmationIn, actor: MaySearch) -> dict:  # a thread: DB work, off the loop
    """Confirm that a result of a search you may see shows the person searched for (in that search's
    case). One confirmation makes a match "confirmed"; a second by a different user "verified".
    Any search you may not see answers 404."""
    return confirm(deps.database(request), actor, body.search_id, body.face_id)
