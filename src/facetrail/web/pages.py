"""The HTML pages: search, sign-in, password, approvals, reports, audit log, opt-out.

Pages answer HTML; a page that needs a signed-in user redirects to /login without one
(`deps.SignedIn`). Refusals of a form are shown on the page itself.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse

from ..errors import Refused
from ..governance import auditlog
from ..governance import report as transparency
from ..governance.accounts import AccountError, change_password, end_session, start_session
from ..governance.accounts import authenticate as check_password
from ..governance.approvals import ApprovalError
from ..search.bands import BANDS
from ..search.opt_out import RECEIVED as OPT_OUT_RECEIVED
from ..store import WebSession
from . import cpu, deps
from .cases import searchable as searchable_cases
from .deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    MayApprove,
    SignedIn,
    SignedInAny,
    actor_of,
    same,
    templates,
)
from .errors import describe

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


@router.get("/")
def search_page(request: Request, web: SignedIn):
    actor = actor_of(web)
    settings = deps.settings(request)
    context = {
        "bands": [(b.name, f"{b.max_distance:.2f}" if b.max_distance < 10 else "—") for b in BANDS],
        "threshold": settings.match_threshold,
        "purposes": settings.purposes,
        "my_cases": searchable_cases(request, actor),
        "user": web.user,
        "csrf_token": web.csrf_token,
        "can_search": actor.can("search"),
        "can_approve": actor.can("approve"),
        "waiting": len(deps.approval_queue(request)) if actor.can("approve") else 0,
        "can_report": actor.can("audit.read"),
    }
    return templates.TemplateResponse(request, "search.html", context)


@router.get("/searches/{search_id}")
def search_results_page(request: Request, search_id: int, web: SignedIn):
    """An earlier search's results (the page loads them from /api/v1/searches/{id}, under the same
    rules: its requester or a supervisor, once they may be seen), e.g. for a second person to
    compare and verify a match."""
    if not deps.searcher(request).may_see(actor_of(web), search_id):
        return HTMLResponse("No such search.", status_code=404)  # one you may not see, or an id of nothing
    context = {"user": web.user, "csrf_token": web.csrf_token, "search_id": search_id}
    return templates.TemplateResponse(request, "results.html", context)


# Signing in and out, passwords


@router.get("/login")
def login_page(request: Request):
    return login_form(request)


def login_form(request: Request, error: str | None = None, status: int = 200, headers: dict | None = None):
    token = secrets.token_urlsafe(32)
    response = templates.TemplateResponse(request, "login.html", {"csrf_token": token, "error": error},
                                          status_code=status, headers=headers)
    deps.set_cookie(response, request, LOGIN_CSRF_COOKIE, token, 3600)
    return response


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
):
    if not same(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
        return login_form(request, "The form expired. Please sign in again.")
    try:  # argon2 (about 0.3 s of CPU, 64 MiB): in the CPU pool, off the loop
        secret, refused = await cpu.run(request, sign_in, request, username.strip(), password)
    except Refused as exc:  # busy
        secret, refused = None, exc
    if refused is not None:
        status, _, detail, headers = describe(refused)
        return login_form(request, detail, 200 if isinstance(refused, AccountError) else status, headers)
    response = redirect("/")
    deps.set_cookie(response, request, SESSION_COOKIE, secret, 12 * 3600)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


def sign_in(request: Request, username: str, password: str) -> tuple[str | None, Refused | None]:
    """(session secret, None), or (None, why not)."""
    secret, refused = None, None
    with deps.database(request).session() as session:
        try:
            user = check_password(session, username, password, "web", deps.client_address(request))
            secret, _ = start_session(session, user)
        except Refused as exc:  # wrong username or password (whichever it was), or too many failures
            refused = exc
        session.commit()  # failed and throttled attempts are recorded (and counted) too
    return secret, refused


@router.post("/logout")
async def logout(request: Request, csrf_token: Annotated[str, Form()] = ""):
    web = deps.browser_session(request)
    if web is not None and same(csrf_token, web.csrf_token):
        with deps.database(request).session() as session, session.begin():
            end_session(session, request.cookies[SESSION_COOKIE])
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _password_form(request: Request, web: WebSession, error: str | None = None):
    context = {"csrf_token": web.csrf_token, "error": error, "user": web.user}
    return templates.TemplateResponse(request, "password.html", context)


@router.get("/account/password")
def password_form(request: Request, web: SignedInAny):
    return _password_form(request, web)


@router.post("/account/password")
async def password_change(
    request: Request,
    web: SignedInAny,
    current: Annotated[str, Form()] = "",
    new: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
):
    if not same(csrf_token, web.csrf_token):
        return _password_form(request, web, "The form expired. Please try again.")
    if new != confirm:
        return _password_form(request, web, "The two new passwords differ.")
    try:  # two argon2 runs: in the CPU pool, off the loop
        await cpu.run(request, new_password, request, web, current, new)
    except AccountError as exc:
        return _password_form(request, web, str(exc).capitalize() + ".")
    return redirect("/")


def new_password(request: Request, web: WebSession, current: str, new: str) -> None:
    with deps.database(request).session() as session, session.begin():
        change_password(session, session.merge(web.user), current, new)


# Oversight: approvals, reports, the audit log


def _approvals(request: Request, web: WebSession | None, message: str | None = None, error: str | None = None,
               status: int = 200):
    if web is None:
        return redirect("/login")
    if not actor_of(web).can("approve"):
        return HTMLResponse("Only supervisors decide on searches.", status_code=403)
    context = {"items": deps.approval_queue(request), "user": web.user, "csrf_token": web.csrf_token,
               "message": message, "error": error}
    return templates.TemplateResponse(request, "approvals.html", context, status_code=status)


@router.get("/approvals")
def approvals_page(request: Request, web: SignedIn):
    return _approvals(request, web)


@router.post("/approvals/{approval_id}")
async def approvals_decide(
    request: Request,
    approval_id: int,
    web: SignedIn,  # first: a one-time password session is sent to change it
    actor: MayApprove,  # checks the form's CSRF token too
    decision: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
):
    try:
        result = await cpu.run(request, deps.searcher(request).decide, actor, approval_id, decision == "approve",
                               reason)  # approving searches the index: in the CPU pool
    except ApprovalError as exc:
        return _approvals(request, web, error=str(exc).capitalize() + ".", status=422)
    return _approvals(request, web, message=f"Search {result['search_id']} {result['state']}.")


@router.get("/reports")
def reports_page(request: Request, web: SignedIn, start: Annotated[date | None, Query(alias="from")] = None,
                 end: Annotated[date | None, Query(alias="to")] = None):
    actor = actor_of(web)
    if not actor.can("audit.read"):
        return HTMLResponse("Only auditors, supervisors and admins see reports.", status_code=403)
    end = end or datetime.now(UTC).date()
    start = start or end - timedelta(days=30)
    with deps.database(request).session() as session, session.begin():
        data = transparency.make(session, actor, start, end)  # each model's match threshold
    images = {
        name: "data:image/png;base64," + base64.b64encode(png).decode()
        for name, png in transparency.charts(data).items()
    }
    context = {"report": data, "images": images, "user": web.user, "csrf_token": web.csrf_token}
    return templates.TemplateResponse(request, "reports.html", context)


FIELD_TEXT_LIMIT = 300  # characters of one field shown; the whole entry is in `audit export`


def readable(details: dict) -> list[tuple[str, str]]:
    """An entry's details as (name, text) pairs for a person: plain values as they are, lists and
    objects as compact JSON, each cut at FIELD_TEXT_LIMIT characters."""
    def text(value) -> str:
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
        return shown if len(shown) <= FIELD_TEXT_LIMIT else shown[:FIELD_TEXT_LIMIT] + "…"

    return [(name.replace("_", " "), text(value)) for name, value in details.items() if value not in (None, "", [], {})]


@router.get("/audit")
def audit_page(
    request: Request,
    web: SignedIn,
    action: str | None = None,
    actor_name: Annotated[str | None, Query(alias="actor")] = None,
    case: str | None = None,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
):
    if not actor_of(web).can("audit.read"):
        return HTMLResponse("Only auditors, supervisors and admins read the audit log.", status_code=403)
    with deps.database(request).session() as session:
        log = auditlog.browse(session, action=action, actor=actor_name, case=case, start=start, end=end)
    entries = [
        {
            "id": e.id,
            "created_at": e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "actor": e.actor,
            "action": e.action,
            "purpose": e.purpose,
            "fields": readable(e.details),
        }
        for e in log.entries
    ]
    filters = {"action": action, "actor": actor_name, "case": case, "start": start, "end": end}
    context = {
        "entries": entries, "more": log.more, "actions": log.actions, "filters": filters,
        "checked": log.checked, "problem": log.problem, "user": web.user, "csrf_token": web.csrf_token,
    }
    return templates.TemplateResponse(request, "audit.html", context)


# Opt-out: for anyone, no account


@router.get("/opt-out")
def opt_out_page(request: Request):
    return opt_out_form(request)


def opt_out_form(request: Request, error: str | None = None, message: str | None = None, status: int = 200,
                 headers: dict | None = None):
    token = secrets.token_urlsafe(32)
    context = {"csrf_token": token, "error": error, "message": message}
    response = templates.TemplateResponse(request, "optout.html", context, status_code=status, headers=headers)
    deps.set_cookie(response, request, LOGIN_CSRF_COOKIE, token, 3600)
    return response


@router.post("/opt-out")
async def opt_out_request(
    request: Request,
    image: Annotated[list[UploadFile], File()],
    later: BackgroundTasks,
    statement: Annotated[str, Form()] = "",
    contact: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
):
    if not same(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
        return opt_out_form(request, error="The form expired. Please send it again.", status=403)
    try:
        await deps.take_opt_out(request, image, statement, contact, later)
    except Refused as exc:
        status, _, detail, headers = describe(exc)  # 429 rate_limited, 503 busy: with Retry-After
        return opt_out_form(request, error=detail, status=status, headers=headers)
    return opt_out_form(request, message=OPT_OUT_RECEIVED)
