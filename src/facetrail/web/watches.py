"""Watches on the web: the pages `/watches` (list and request form) and `/watches/inbox` (the hits
of your watches, as result cards), and the JSON API under /api/v1/watches. The rules are in
governance/watches.py; a hit is one of its owner's searches, so its crop and thumbnail are served
by the search media routes (web/media.py), under the same rules as any search result."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from ..errors import Refused
from ..governance import watches
from ..governance.actors import require
from ..search import SearchRefused
from . import cpu, deps
from .deps import Caller, MayApprove, MaySearch, SignedIn, actor_of, templates

api = APIRouter(prefix="/api/v1/watches", tags=["watches"])
pages = APIRouter(prefix="/watches", include_in_schema=False, default_response_class=HTMLResponse)


class RenewIn(BaseModel):
    days: int = Field(ge=1, le=watches.MAX_DAYS, description="Days from now")


class StopIn(BaseModel):
    reason: str = Field("", description="Why (recorded)")


def _run(request: Request, work, *args, write: bool = False, **kwargs):
    """`work(session, *args, **kwargs)` in one session (one transaction when it writes); a watch
    is given back as described."""
    with deps.database(request).session() as session:
        if not write:
            return work(session, *args, **kwargs)
        with session.begin():
            result = work(session, *args, **kwargs)
            return watches.describe(session, result) if isinstance(result, watches.Watch) else result


# The API


@api.get("")
def list_watches(request: Request, actor: Caller, case: str | None = None) -> list[dict]:
    """Watches newest first (of one case with `case`): all for supervisors, auditors and admins; an
    investigator's own and those of the cases they are a member of."""
    require(actor, "cases.read")
    return _run(request, watches.listing, actor, case)


@api.post("")
async def request_watch(
    request: Request,
    actor: MaySearch,
    image: Annotated[list[UploadFile], File(description="1-10 photos of the person (repeated); each photo's "
                                                        "largest face makes the template; the photos are not kept")],
    case_ref: Annotated[str, Form(description="The open case it is under; you must be a member")] = "",
    days: Annotated[int, Form(ge=1, le=watches.MAX_DAYS, description="Days it runs once approved")] = watches.MAX_DAYS,
    webhook: Annotated[str, Form(description="Also POST each hit here (JSON; no face or image)")] = "",
    email: Annotated[str, Form(description="Also email each hit here (no face or image)")] = "",
) -> dict:
    """Ask for a watch (recorded); another supervisor approves it."""
    if not 1 <= len(image) <= watches.MAX_PHOTOS:
        raise Refused(f"Send 1 to {watches.MAX_PHOTOS} photos of one person.", "too_many_photos")
    photos = await deps.read_uploads(request, image)
    searcher = deps.searcher(request)
    settings = searcher.settings  # its face_model is the model of its faces_in (deps.settings)
    vectors, shas = await cpu.run(request, watches.templates_by_model, settings, photos, searcher.faces_in)
    return _run(request, watches.request, settings, actor, case_ref, vectors, shas, days=days, webhook=webhook,
                email=email, write=True)


@api.get("/inbox")
def inbox(request: Request, actor: MaySearch) -> list[dict]:
    """The hits of your watches, newest first, each with the search it was recorded as (see
    /api/v1/searches/{search_id} for its result, crop_url and thumb_url)."""
    return _run(request, watches.inbox, deps.settings(request), actor, write=True)


@api.get("/{watch_id}")
def show_watch(request: Request, watch_id: int, actor: Caller) -> dict:
    return _run(request, watches.show, actor, watch_id)


@api.post("/{watch_id}/approve")
def approve_watch(request: Request, watch_id: int, actor: MayApprove) -> dict:
    """Approve a requested watch (supervisors, not their own; recorded)."""
    return _run(request, watches.approve, actor, watch_id, write=True)


@api.post("/{watch_id}/renew")
def renew_watch(request: Request, watch_id: int, body: RenewIn, actor: MayApprove) -> dict:
    """Approve a watch anew, for `days` from now (supervisors; recorded)."""
    return _run(request, watches.renew, actor, watch_id, body.days, write=True)


@api.post("/{watch_id}/stop")
def stop_watch(request: Request, watch_id: int, actor: Caller, body: StopIn | None = None) -> dict:
    """Stop a watch (its owner or a supervisor; recorded)."""
    return _run(request, watches.stop, actor, watch_id, body.reason if body else "", write=True)


# The pages


def _page(request: Request, web, name: str, context: dict, status: int = 200):
    actor = actor_of(web)
    context = {**context, "user": web.user, "csrf_token": web.csrf_token, "can_approve": actor.can("approve"),
               "can_request": actor.can("search")}
    return templates.TemplateResponse(request, name, context, status_code=status)


def _listing(request: Request, web, case: str | None = None, error: str | None = None, status: int = 200,
             form: dict | None = None):
    actor = actor_of(web)
    listed = _run(request, watches.listing, actor, case or None) if actor.can("cases.read") else []
    return _page(request, web, "watches.html", {"watches": listed, "case": case or "", "error": error,
                                                 "form": form or {}, "max_days": watches.MAX_DAYS}, status)


@pages.get("")
def watches_page(request: Request, web: SignedIn, case: str | None = None):
    return _listing(request, web, case)


@pages.post("")
async def request_form(
    request: Request, web: SignedIn, actor: MaySearch,
    image: Annotated[list[UploadFile], File()], case_ref: Annotated[str, Form()] = "",
    days: Annotated[int, Form()] = watches.MAX_DAYS, webhook: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
):
    try:
        if not 1 <= days <= watches.MAX_DAYS:
            raise Refused(f"A watch runs 1 to {watches.MAX_DAYS} days.", "watch_refused")
        await request_watch(request, actor, image, case_ref, days, webhook, email)
    except Refused as exc:  # shown with the form as it was sent (except the photos)
        return _listing(request, web, error=str(exc), status=422,
                        form={"case_ref": case_ref, "days": days, "webhook": webhook, "email": email})
    return RedirectResponse("/watches", status_code=303)


def _change(request: Request, web, change, *args):
    try:
        change(request, *args)
    except Refused as exc:
        return _listing(request, web, error=str(exc), status=404 if exc.code == "not_found" else 422)
    return RedirectResponse("/watches", status_code=303)


@pages.post("/{watch_id}/approve")
def approve_form(request: Request, watch_id: int, web: SignedIn, actor: MayApprove):
    return _change(request, web, approve_watch, watch_id, actor)


@pages.post("/{watch_id}/renew")
def renew_form(request: Request, watch_id: int, web: SignedIn, actor: MayApprove,
               days: Annotated[int, Form()] = watches.MAX_DAYS):
    if not 1 <= days <= watches.MAX_DAYS:
        return _listing(request, web, error=f"A watch runs 1 to {watches.MAX_DAYS} days.", status=422)
    return _change(request, web, renew_watch, watch_id, RenewIn(days=days), actor)


@pages.post("/{watch_id}/stop")
def stop_form(request: Request, watch_id: int, web: SignedIn, actor: Caller,
              reason: Annotated[str, Form()] = ""):
    return _change(request, web, stop_watch, watch_id, actor, StopIn(reason=reason))


@pages.get("/inbox")
def inbox_page(request: Request, web: SignedIn):
    """The hits of your watches as result cards: the face crop and image thumbnail through the
    search media routes, where the image was found, and the distance band."""
    actor = actor_of(web)
    hits = _run(request, watches.inbox, deps.settings(request), actor, write=True) if actor.can("search") else []
    searcher = deps.searcher(request)
    for hit in hits:
        hit["match"] = None
        if hit["search_id"]:
            try:
                found = searcher.results_of(actor, hit["search_id"]).results
            except SearchRefused:
                found = []
            hit["match"] = found[0] if found else None  # none: removed or opted out since
    return _page(request, web, "inbox.html", {"hits": hits})


router = APIRouter()  # what the app includes: the API and the pages
router.include_router(api)
router.include_router(pages)
