"""Cases on the web: the list and case pages (`/cases`, `/cases/{id}`) and the JSON API under
/api/v1/cases. URLs name a case by its id (references may hold any character); the services in
governance/cases.py decide who may see and change what, and record every change."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from ..errors import Refused
from ..governance import cases
from ..governance.actors import require
from . import deps
from .deps import Caller, MayApprove, SignedIn, actor_of, templates

api = APIRouter(prefix="/api/v1/cases", tags=["cases"])
pages = APIRouter(prefix="/cases", include_in_schema=False, default_response_class=HTMLResponse)


class CaseIn(BaseModel):
    ref: str = Field(description="The case reference (letters, digits, . _ / : -; no spaces)")
    title: str
    purpose: str = Field(description="One of the configured purposes")
    authority: str = Field(description="Who authorised the case")
    authorisation_ref: str | None = Field(None, description="The authorisation's reference (not when urgent)")
    authorised_on: date | None = Field(None, description="The authorisation's date (not when urgent)")
    urgent: bool = Field(False, description="Authorisation requested; it must be recorded within 48 hours")
    expires_on: date = Field(description="Last day searches may be made under it (at most a year ahead)")
    members: list[str] = Field(default=[], description="Users who may search under it")


class AmendIn(BaseModel):
    title: str | None = None
    authority: str | None = None
    authorisation_ref: str | None = None
    authorised_on: date | None = None
    urgent: bool = False
    expires_on: date | None = None


class CloseIn(BaseModel):
    reason: str = Field(min_length=1, description="Why (recorded)")


class MemberIn(BaseModel):
    username: str
    action: Literal["add", "remove"] = "add"


def _run(request: Request, work, *args, write: bool = False, **kwargs):
    """`work(session, *args, **kwargs)` in one session (one transaction when it writes)."""
    with deps.database(request).session() as session:
        if not write:
            return work(session, *args, **kwargs)
        with session.begin():
            return work(session, *args, **kwargs)


def _authorisation(body: AmendIn | CaseIn) -> cases.Authorisation | None:
    if body.authority is None and body.authorisation_ref is None and body.authorised_on is None and not body.urgent:
        return None
    return cases.Authorisation(body.authority or "", body.authorisation_ref, body.authorised_on, body.urgent)


# The API


@api.get("")
def list_cases(request: Request, actor: Caller, status: str | None = None) -> list[dict]:
    """Cases newest first: all of them for supervisors, auditors and admins; an investigator's own."""
    cases_read(actor)
    return _run(request, cases.listing, actor, status=status)


@api.post("")
def open_case(request: Request, body: CaseIn, actor: MayApprove) -> dict:
    """Open a case (supervisors; recorded)."""
    def work(session):
        case = cases.open_case(session, actor, ref=body.ref, title=body.title, purpose=body.purpose,
                               purposes=deps.settings(request).purposes, authorisation=_authorisation(body),
                               expires_on=body.expires_on, members=body.members)
        return cases.describe(session, case)

    return _run(request, work, write=True)


@api.get("/{case_id}")
def case_activity(request: Request, case_id: int, actor: Caller, kind: str | None = None,
                  user: str | None = None) -> dict:
    """A case's record and its activity (searches, decisions, confirmations, changes), each line
    with the id of the audit entry behind it."""
    cases_read(actor)
    return _run(request, lambda s: cases.activity(s, actor, cases.ref_of(s, actor, case_id), kind=kind, user=user))


@api.post("/{case_id}/amend")
def amend_case(request: Request, case_id: int, body: AmendIn, actor: MayApprove) -> dict:
    """Change the title, authorisation or expiry; completes a case made from earlier references."""
    def work(session):
        case = cases.amend(session, actor, cases.ref_of(session, actor, case_id), title=body.title,
                           authorisation=_authorisation(body), expires_on=body.expires_on)
        return cases.describe(session, case)

    return _run(request, work, write=True)


@api.post("/{case_id}/close")
def close_case(request: Request, case_id: int, body: CloseIn, actor: MayApprove) -> dict:
    def work(session):
        return cases.describe(session, cases.close(session, actor, cases.ref_of(session, actor, case_id),
                                                   body.reason))

    return _run(request, work, write=True)


@api.post("/{case_id}/members")
def case_member(request: Request, case_id: int, body: MemberIn, actor: MayApprove) -> dict:
    """Add or remove a member (supervisors; recorded)."""
    def work(session):
        ref = cases.ref_of(session, actor, case_id)
        (cases.add_member if body.action == "add" else cases.remove_member)(session, actor, ref, body.username)
        return cases.show(session, actor, ref)

    return _run(request, work, write=True)


def searchable(request: Request, actor) -> list[dict]:
    """The open cases `actor` may search under now (a member), for the search form."""
    if not actor.can("search"):
        return []
    return [case for case in _run(request, cases.listing, actor, status="open") if actor.username in case["members"]]


def cases_read(actor) -> None:
    require(actor, "cases.read")


# The pages


def _page(request: Request, web, name: str, context: dict, status: int = 200):
    context = {**context, "user": web.user, "csrf_token": web.csrf_token,
               "can_manage": actor_of(web).can("approve")}
    return templates.TemplateResponse(request, name, context, status_code=status)


def _listing(request: Request, web, error: str | None = None, status: int = 200, form: dict | None = None):
    actor = actor_of(web)
    listed = _run(request, cases.listing, actor) if actor.can("cases.read") else []
    return _page(request, web, "cases.html", {"cases": listed, "purposes": deps.settings(request).purposes,
                                               "error": error, "today": date.today().isoformat(),
                                               "form": form or {}}, status)


@pages.get("")
def cases_page(request: Request, web: SignedIn):
    return _listing(request, web)


@pages.post("")
def open_case_form(
    request: Request, web: SignedIn, actor: MayApprove,
    ref: Annotated[str, Form()] = "", title: Annotated[str, Form()] = "", purpose: Annotated[str, Form()] = "",
    authority: Annotated[str, Form()] = "", authorisation_ref: Annotated[str, Form()] = "",
    authorised_on: Annotated[date | None, Form()] = None, urgent: Annotated[bool, Form()] = False,
    expires_on: Annotated[date | None, Form()] = None,
):
    body = CaseIn.model_construct(ref=ref, title=title, purpose=purpose, authority=authority,
                                  authorisation_ref=authorisation_ref or None, authorised_on=authorised_on,
                                  urgent=urgent, expires_on=expires_on or date.today(), members=[])
    try:
        opened = open_case(request, body, actor)
    except Refused as exc:  # shown with the form as it was sent: nothing typed is lost
        return _listing(request, web, error=str(exc), status=422, form=body.model_dump() | {"expires_on": expires_on})
    return RedirectResponse(f"/cases/{opened['id']}", status_code=303)


def _case(request: Request, web, case_id: int, kind: str | None = None, person: str | None = None,
          message: str | None = None, error: str | None = None, status: int = 200):
    actor = actor_of(web)
    try:
        cases_read(actor)
        data = _run(request, lambda s: cases.activity(s, actor, cases.ref_of(s, actor, case_id), kind=kind,
                                                      user=person))
    except Refused as exc:
        return HTMLResponse("No such case.", status_code=404) if isinstance(exc, cases.CaseNotFound) else \
            HTMLResponse(str(exc), status_code=403)
    return _page(request, web, "case.html", {**data, "filters": {"kind": kind, "user": person},
                                              "message": message, "error": error}, status)


@pages.get("/{case_id}")
def case_page(request: Request, case_id: int, web: SignedIn, kind: str | None = None, user: str | None = None):
    return _case(request, web, case_id, kind or None, user or None)


@pages.post("/{case_id}/members")
def member_form(request: Request, case_id: int, web: SignedIn, actor: MayApprove,
                username: Annotated[str, Form()] = "", action: Annotated[str, Form()] = "add"):
    try:
        case_member(request, case_id, MemberIn(username=username, action="remove" if action == "remove" else "add"),
                    actor)
    except Refused as exc:
        return _case(request, web, case_id, error=str(exc), status=422)
    return _case(request, web, case_id, message=f"{username} {'removed' if action == 'remove' else 'added'}.")


@pages.post("/{case_id}/close")
def close_form(request: Request, case_id: int, web: SignedIn, actor: MayApprove,
               reason: Annotated[str, Form()] = ""):
    try:
        close_case(request, case_id, CloseIn.model_construct(reason=reason), actor)
    except Refused as exc:
        return _case(request, web, case_id, error=str(exc), status=422)
    return _case(request, web, case_id, message="Case closed.")


router = APIRouter()  # what the app includes: the API and the pages
router.include_router(api)
router.include_router(pages)
