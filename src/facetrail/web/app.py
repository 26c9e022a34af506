"""The web app: a JSON API under /api/v1, the search page, and media by id.

The web layer is thin: it reads uploads within limits and calls search.Searcher.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from .. import __version__
from ..config import Settings
from ..faces import load_engine
from ..governance import approvals, audit
from ..governance import report as transparency
from ..governance.accounts import AccountError, Actor, change_password, end_session, start_session
from ..governance.accounts import authenticate as check_password
from ..governance.optout import counts as optout_counts
from ..governance.optout import opt_out
from ..governance.retention import maintenance as retention_maintenance
from ..governance.settings_log import record_if_changed as record_settings
from ..governance.verification import VerificationError, confirm
from ..index import follow_database, open_index
from ..images.decode import DecodeError
from ..images.previews import make_crop
from ..search import RateLimited, Searcher, SearchRefused, check_request
from ..search.bands import BANDS
from ..store import AuditEntry, Database, Face, Image, Location
from ..store.media import MediaStore
from .auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, authenticate, browser_session, same
from .ratelimit import RateLimiter

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
OPT_OUT_RECEIVED = (
    "Thank you. Your request is recorded. Any face in this index that matches the face in your photo "
    "has been removed, and matching faces will not be indexed again."
)
# Decoding problems with the uploaded photo -> HTTP status
STATUS = {"too_large": 413, "too_many_pixels": 413}


class ConfirmationIn(BaseModel):
    search_id: int = Field(description="The audit id of the search that showed the face")
    face_id: int = Field(description="The result's face_id")


class DecisionIn(BaseModel):
    decision: Literal["approve", "deny"]
    reason: str = Field(min_length=1, description="Why (recorded)")


def queue_item(approval, entry) -> dict:
    return {
        **approvals.describe(approval),
        "purpose": entry.purpose,
        "justification": entry.details.get("justification"),
        "case_ref": entry.details.get("case_ref"),
        "result_count": entry.details.get("result_count"),
    }


class Problem(HTTPException):
    """An error answered as {"detail": message, "code": code}."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
        super().__init__(status, message, headers=headers)
        self.code = code


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.db_url)
        with db.session() as session, session.begin():
            record_settings(session, settings)
            retention_maintenance(session, settings)
        app.state.db = db
        index = open_index(settings, db, background=True)  # training never blocks a search
        app.state.searcher = Searcher(settings, db, index, load_engine(settings))
        app.state.media = MediaStore(settings.media_dir)
        app.state.opt_out_limit = RateLimiter(settings.opt_out_per_hour, 3600)
        stop = threading.Event()
        follower = threading.Thread(target=follow_database, args=(index, db, stop), daemon=True,
                                    name="facetrail-index-follow")
        follower.start()  # faces stored by other processes (index, crawl, workers) become searchable
        yield
        stop.set()
        follower.join(timeout=5)
        db.close()

    app = FastAPI(
        title="facetrail",
        version=__version__,
        description="Accountable face search: every search needs a purpose and is written to the audit log.",
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=[HERE / "templates", transparency.TEMPLATES])

    def requires(permission: str | None = None):
        async def dependency(request: Request) -> Actor:
            return await authenticate(request, permission)

        return Depends(dependency)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    @app.exception_handler(Problem)
    async def problem_handler(_request: Request, exc: Problem) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "code": exc.code}, status_code=exc.status_code, headers=exc.headers)

    async def read_upload(image: UploadFile) -> bytes:
        """The uploaded bytes, refusing more than the configured limit without reading it all."""
        limit = settings.upload_max_bytes
        data = await image.read(limit + 1)
        if len(data) > limit:
            raise Problem(413, "too_large", f"The photo is larger than the {limit // (1024 * 1024)} MB limit.")
        if not data:
            raise Problem(400, "empty", "The uploaded file is empty.")
        return data

    def searcher(request: Request) -> Searcher:
        return request.app.state.searcher

    def waiting_count(request: Request) -> int:
        with request.app.state.db.session() as session:
            return len(approvals.pending(session))

    def set_cookie(response, request: Request, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name, value, max_age=max_age, httponly=True, samesite="strict", path="/",
            secure=request.url.scheme == "https",
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request):
        web = browser_session(request)
        if web is None:
            return RedirectResponse("/login", status_code=303)
        if web.user.must_change_password:
            return RedirectResponse("/account/password", status_code=303)
        bands = [(b.name, f"{b.max_distance:.2f}" if b.max_distance < 10 else "—") for b in BANDS]
        context = {
            "bands": bands,
            "threshold": settings.match_threshold,
            "purposes": settings.purposes,
            "user": web.user,
            "csrf_token": web.csrf_token,
            "can_search": Actor.of(web.user, "web").can("search"),
            "can_approve": Actor.of(web.user, "web").can("approve"),
            "waiting": waiting_count(request) if Actor.of(web.user, "web").can("approve") else 0,
            "can_report": Actor.of(web.user, "web").can("audit.read"),
        }
        return templates.TemplateResponse(request, "search.html", context)

    @app.get("/approvals", response_class=HTMLResponse, include_in_schema=False)
    def approvals_page(request: Request, message: str | None = None, error: str | None = None, status: int = 200):
        web = browser_session(request)
        if web is None:
            return RedirectResponse("/login", status_code=303)
        if not Actor.of(web.user, "web").can("approve"):
            return HTMLResponse("Only supervisors decide on searches.", status_code=403)
        with request.app.state.db.session() as session:
            items = [queue_item(approval, entry) for approval, entry in approvals.pending(session)]
        context = {"items": items, "user": web.user, "csrf_token": web.csrf_token, "message": message, "error": error}
        return templates.TemplateResponse(request, "approvals.html", context, status_code=status)

    @app.post("/approvals/{approval_id}", response_class=HTMLResponse, include_in_schema=False)
    async def approvals_decide(
        request: Request,
        approval_id: int,
        decision: Annotated[str, Form()] = "",
        reason: Annotated[str, Form()] = "",
        actor: Actor = requires("approve"),  # checks the form's CSRF token too
    ):
        try:
            result = searcher(request).decide(actor, approval_id, decision == "approve", reason)
        except approvals.ApprovalError as exc:
            return approvals_page(request, error=str(exc).capitalize() + ".", status=422)
        return approvals_page(request, message=f"Search {result['search_id']} {result['state']}.")

    @app.get("/reports", response_class=HTMLResponse, include_in_schema=False)
    def reports_page(request: Request, start: date | None = Query(None, alias="from"),
                     end: date | None = Query(None, alias="to")):
        web = browser_session(request)
        if web is None:
            return RedirectResponse("/login", status_code=303)
        actor = Actor.of(web.user, "web")
        if not actor.can("audit.read"):
            return HTMLResponse("Only auditors, supervisors and admins see reports.", status_code=403)
        end = end or datetime.now(UTC).date()
        start = start or end - timedelta(days=30)
        with request.app.state.db.session() as session, session.begin():
            data = transparency.collect(session, start, end, settings.match_threshold)
            audit.record(session, actor, "report", **{"from": data["from"], "to": data["to"]})
        images = {
            name: "data:image/png;base64," + base64.b64encode(png).decode()
            for name, png in transparency.charts(data).items()
        }
        context = {"report": data, "images": images, "user": web.user, "csrf_token": web.csrf_token}
        return templates.TemplateResponse(request, "reports.html", context)

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit_page(
        request: Request,
        action: str | None = None,
        actor_name: str | None = Query(None, alias="actor"),
        case: str | None = None,
        start: date | None = Query(None, alias="from"),
        end: date | None = Query(None, alias="to"),
    ):
        web = browser_session(request)
        if web is None:
            return RedirectResponse("/login", status_code=303)
        if not Actor.of(web.user, "web").can("audit.read"):
            return HTMLResponse("Only auditors, supervisors and admins read the audit log.", status_code=403)
        limit = 500
        query = select(AuditEntry).order_by(AuditEntry.id.desc())
        if action:
            query = query.where(AuditEntry.action == action)
        if actor_name:
            query = query.where(AuditEntry.actor == actor_name.strip())
        if start or end:
            since, until = transparency.period(start or date(1970, 1, 1), end or datetime.now(UTC).date())
            query = query.where(AuditEntry.created_at >= since, AuditEntry.created_at < until)
        with request.app.state.db.session() as session:
            checked, problem = audit.verify(session)
            rows = session.scalars(query.limit(limit * 4 if case else limit + 1)).all()
            if case:  # the case reference lives in the entry's JSON details
                rows = [e for e in rows if e.details.get("case_ref") == case.strip()]
            actions = session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)).all()
        entries = [
            {
                "id": e.id,
                "created_at": e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                "actor": e.actor,
                "action": e.action,
                "purpose": e.purpose,
                "details": json.dumps(e.details, ensure_ascii=False),
            }
            for e in rows[:limit]
        ]
        filters = {"action": action, "actor": actor_name, "case": case, "start": start, "end": end}
        context = {
            "entries": entries, "more": len(rows) > limit, "actions": actions, "filters": filters,
            "checked": checked, "problem": problem, "user": web.user, "csrf_token": web.csrf_token,
        }
        return templates.TemplateResponse(request, "audit.html", context)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, error: str | None = None):
        token = secrets.token_urlsafe(32)
        response = templates.TemplateResponse(request, "login.html", {"csrf_token": token, "error": error})
        set_cookie(response, request, LOGIN_CSRF_COOKIE, token, 3600)
        return response

    @app.post("/login", include_in_schema=False)
    async def login(
        request: Request,
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "",
    ):
        if not same(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
            return login_form(request, "The form expired. Please sign in again.")
        with request.app.state.db.session() as session:
            try:
                user = check_password(session, username.strip(), password, "web")
                secret, _ = start_session(session, user)
                error = None
            except AccountError as exc:
                error = str(exc).capitalize() + "."
            session.commit()  # failed attempts are recorded (and counted) too
        if error:
            return login_form(request, error)
        response = RedirectResponse("/", status_code=303)
        set_cookie(response, request, SESSION_COOKIE, secret, 12 * 3600)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request, csrf_token: Annotated[str, Form()] = ""):
        web = browser_session(request)
        if web is not None and same(csrf_token, web.csrf_token):
            with request.app.state.db.session() as session, session.begin():
                end_session(session, request.cookies[SESSION_COOKIE])
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/account/password", response_class=HTMLResponse, include_in_schema=False)
    def password_form(request: Request, error: str | None = None):
        web = browser_session(request)
        if web is None:
            return RedirectResponse("/login", status_code=303)
        context = {"csrf_token": web.csrf_token, "error": error, "user": web.user}
        return templates.TemplateResponse(request, "password.html", context)

    @app.post("/account/password", include_in_schema=False)
    async def password_change(
        request: Request,
        current: Annotated[str, Form()] = "",
        new: Annotated[str, Form()] = "",
        confirm: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "",
    ):
        web = browser_session(request)
        if web is None:
            return RedirectResponse("/login", status_code=303)
        if not same(csrf_token, web.csrf_token):
            return password_form(request, "The form expired. Please try again.")
        if new != confirm:
            return password_form(request, "The two new passwords differ.")
        try:
            with request.app.state.db.session() as session, session.begin():
                change_password(session, session.merge(web.user), current, new)
        except AccountError as exc:
            return password_form(request, str(exc).capitalize() + ".")
        return RedirectResponse("/", status_code=303)

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/api/v1/stats", tags=["service"])
    def stats(request: Request, actor: Actor = requires()) -> dict:
        """How much is indexed."""
        index = searcher(request).index
        with request.app.state.db.session() as session:
            count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
            return {
                "images": count(Image),
                "faces": count(Face),
                "locations": count(Location),
                "sources": {
                    "files": session.scalar(
                        select(func.count()).select_from(Location).where(Location.image_id.is_not(None))
                    )
                },
                "index": {"kind": index.kind, "size": len(index)},
                "opt_outs": optout_counts(session),
            }

    @app.post("/api/v1/faces", tags=["search"])
    async def faces(
        request: Request,
        image: Annotated[UploadFile, File(description="A photo")],
        actor: Actor = requires("search"),
    ) -> dict:
        """The faces in an uploaded photo, largest first, each with a small crop (data URL).

        This does not search the index and is not recorded; the photo is not kept."""
        data = await read_upload(image)
        try:
            decoded, found = searcher(request).faces_in(data)
        except DecodeError as exc:
            raise Problem(STATUS.get(exc.reason, 400), exc.reason, _explain(exc.reason, str(exc))) from None
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

    @app.post("/api/v1/search", tags=["search"])
    async def search(
        request: Request,
        image: Annotated[UploadFile, File(description="The query photo")],
        purpose: Annotated[str, Form(description="Purpose category, one of the configured list (recorded)")] = "",
        justification: Annotated[str, Form(description="Why this search is needed (recorded)")] = "",
        case_ref: Annotated[str, Form(description="Case reference (recorded)")] = "",
        actor: Actor = requires("search"),
        face: Annotated[int | None, Form(description="Which face of the photo; default the largest")] = None,
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
        try:
            check_request(settings, actor, purpose, justification, case_ref, urgent)  # before reading the upload
        except SearchRefused as exc:
            raise Problem(403 if exc.code == "not_permitted" else 422, exc.code, str(exc).capitalize() + ".") from None
        data = await read_upload(image)
        try:
            if mode == "copies":
                result = searcher(request).copies(data, actor=actor, purpose=purpose, justification=justification,
                                                  case_ref=case_ref, top_k=top_k, name=image.filename)
                if result.error:
                    raise Problem(STATUS.get(result.error_code, 400), result.error_code,
                                  _explain(result.error_code, result.error))
                return with_media_urls(result.to_dict())
            result = searcher(request).search(
                data,
                actor=actor,
                purpose=purpose,
                justification=justification,
                case_ref=case_ref,
                face=face,
                top_k=top_k,
                threshold=threshold,
                name=image.filename,
                urgent=urgent,
            )
        except SearchRefused as exc:
            raise Problem(422, exc.code, str(exc).capitalize() + ".") from None
        except RateLimited as exc:
            raise Problem(429, "rate_limited", str(exc).capitalize() + ".", exc.retry_after) from None
        if result.error_code == "no_face":
            raise Problem(422, "no_face", "No face was found in this photo. Try a clearer, larger photo of the face.")
        if result.error_code == "no_such_face":
            raise Problem(422, "no_such_face", result.error)
        if result.error:
            raise Problem(STATUS.get(result.error_code, 400), result.error_code, _explain(result.error_code, result.error))
        return with_media_urls(result.to_dict())

    def with_media_urls(body: dict) -> dict:
        for item in body["results"]:
            item["crop_url"] = f"/media/faces/{item['face_id']}.jpg"
            item["thumb_url"] = f"/media/images/{item['image']['id']}.jpg"
        for item in body.get("copies", []):
            item["thumb_url"] = f"/media/images/{item['image']['id']}.jpg"
        return body

    @app.get("/api/v1/searches/{search_id}", tags=["search"])
    def search_results(request: Request, search_id: int, actor: Actor = requires("search")) -> dict:
        """An earlier search's results (for its requester or a supervisor): for a search awaiting
        prior approval, none until it is approved."""
        try:
            return with_media_urls(searcher(request).results_of(actor, search_id).to_dict())
        except SearchRefused as exc:
            raise Problem(404 if "no search" in str(exc) else 403, "not_visible", str(exc).capitalize() + ".") from None

    @app.get("/api/v1/approvals", tags=["approvals"])
    def approval_queue(request: Request, actor: Actor = requires("approve")) -> list[dict]:
        """Searches waiting for a supervisor: prior ones withhold results; review and urgent ones
        were shown and need a review (urgent ones by their due time)."""
        with request.app.state.db.session() as session:
            return [queue_item(approval, entry) for approval, entry in approvals.pending(session)]

    @app.post("/api/v1/approvals/{approval_id}", tags=["approvals"])
    async def approval_decision(
        request: Request, approval_id: int, body: DecisionIn, actor: Actor = requires("approve")
    ) -> dict:
        """Approve or deny a search, with a reason. Nobody decides on their own search."""
        try:
            return searcher(request).decide(actor, approval_id, body.decision == "approve", body.reason)
        except approvals.ApprovalError as exc:
            raise Problem(409 if "already" in str(exc) else 422, "not_decided", str(exc).capitalize() + ".") from None

    async def take_opt_out(request: Request, image: UploadFile, statement: str, contact: str) -> None:
        """Shared by the page and the API: raises Problem, or returns once the opt-out is done."""
        retry = request.app.state.opt_out_limit.hit(request.client.host if request.client else "?")
        if retry is not None:
            raise Problem(429, "rate_limited", "Too many requests from here; please try again later.", retry)
        if statement != "yes":
            raise Problem(422, "statement_required", "Please confirm the statement that this is a photo of you.")
        data = await read_upload(image)
        try:
            decoded, found = searcher(request).faces_in(data)
        except DecodeError as exc:
            raise Problem(STATUS.get(exc.reason, 400), exc.reason, _explain(exc.reason, str(exc))) from None
        del data, decoded  # the photo is not kept
        if not found:
            raise Problem(422, "no_face", "No face was found in this photo. Try a clearer, larger photo of your face.")
        index = searcher(request).index
        with request.app.state.db.session() as session, session.begin():
            opt_out(session, index, request.app.state.media, found[0].embedding, settings.match_threshold,
                    contact.strip()[:320] or None)
        index.save()

    @app.get("/opt-out", response_class=HTMLResponse, include_in_schema=False)
    def opt_out_form(request: Request, error: str | None = None, message: str | None = None, status: int = 200):
        token = secrets.token_urlsafe(32)
        context = {"csrf_token": token, "error": error, "message": message}
        response = templates.TemplateResponse(request, "optout.html", context, status_code=status)
        set_cookie(response, request, LOGIN_CSRF_COOKIE, token, 3600)
        return response

    @app.post("/opt-out", response_class=HTMLResponse, include_in_schema=False)
    async def opt_out_page(
        request: Request,
        image: Annotated[UploadFile, File()],
        statement: Annotated[str, Form()] = "",
        contact: Annotated[str, Form()] = "",
        csrf_token: Annotated[str, Form()] = "",
    ):
        if not same(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
            return opt_out_form(request, error="The form expired. Please send it again.", status=403)
        try:
            await take_opt_out(request, image, statement, contact)
        except Problem as exc:
            return opt_out_form(request, error=exc.detail, status=exc.status_code)
        return opt_out_form(request, message=OPT_OUT_RECEIVED)

    @app.post("/api/v1/opt-out", tags=["opt-out"])
    async def opt_out_api(
        request: Request,
        image: Annotated[UploadFile, File(description="A photo of your face")],
        statement: Annotated[str, Form(description='"yes": this is me and I ask to be removed')] = "",
        contact: Annotated[str, Form(description="Optional contact")] = "",
    ) -> dict:
        """Remove your face from the index, now and in future. No account needed; rate-limited.
        The answer is the same whether or not your face was in the index."""
        await take_opt_out(request, image, statement, contact)
        return {"status": "received", "message": OPT_OUT_RECEIVED}

    @app.post("/api/v1/confirmations", tags=["search"])
    async def confirm_match(
        request: Request, body: ConfirmationIn, actor: Actor = requires("search")
    ) -> dict:
        """Confirm that a result of a search shows the person searched for (in that search's case).
        One confirmation makes a match "confirmed"; a second by a different user "verified"."""
        try:
            with request.app.state.db.session() as session, session.begin():
                return confirm(session, actor, body.search_id, body.face_id)
        except VerificationError as exc:
            raise Problem(409 if "already" in str(exc) else 422, "not_confirmed", str(exc).capitalize() + ".") from None

    @app.get("/media/faces/{face_id}.jpg", include_in_schema=False)
    def face_crop(request: Request, face_id: int, actor: Actor = requires("search")):
        with request.app.state.db.session() as session:
            row = session.execute(
                select(Image.sha256, Face.idx).join(Face, Face.image_id == Image.id).where(Face.id == face_id)
            ).first()
        return _media(row and request.app.state.media.crop_path(row.sha256, row.idx))

    @app.get("/media/images/{image_id}.jpg", include_in_schema=False)
    def thumbnail(request: Request, image_id: int, actor: Actor = requires("search")):
        with request.app.state.db.session() as session:
            sha = session.scalar(select(Image.sha256).where(Image.id == image_id))
        return _media(sha and request.app.state.media.thumb_path(sha))

    return app


def _media(path: Path | None) -> FileResponse:
    if not path or not path.is_file():
        raise HTTPException(404, "not found")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


def _explain(code: str, detail: str) -> str:
    """A sentence for a person about why their photo could not be used."""
    messages = {
        "not_an_image": "This file is not an image. Upload a JPEG, PNG, WebP, GIF, BMP or TIFF photo.",
        "unsupported_format": "This image format is not supported. Use JPEG, PNG, WebP, GIF, BMP or TIFF.",
        "too_many_pixels": f"The photo has too many pixels ({detail}).",
        "too_large": f"The photo is too large ({detail}).",
        "truncated": "The photo is incomplete (truncated). Upload the whole file.",
        "corrupt": "The photo is damaged and cannot be read.",
        "empty": "The uploaded file is empty.",
    }
    return messages.get(code, detail)
