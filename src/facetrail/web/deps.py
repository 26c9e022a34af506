"""What the pages and the API share: who is calling, the app's parts, uploads, templates.

Who is calling: a bearer token (API clients) or a signed-in browser session (the pages).
Browser sessions are cookies (HttpOnly, SameSite=Strict); every state-changing request made
with one must carry the session's CSRF token (form field `csrf_token` or header
`X-CSRF-Token`). Bearer-token calls need no CSRF token: browsers never add them on their own.
A session signed in with a one-time password may only change it and sign out: pages redirect
to /account/password, API calls are refused (403 `password_change_required`).

Where a request comes from: `client_address` and `scheme`, which believe X-Forwarded-For and
X-Forwarded-Proto only from the reverse proxies listed in `trusted_proxies` (default: none).
Nothing else reads `request.client` or those headers.
"""

from __future__ import annotations

import hmac
import ipaddress
from pathlib import Path
from typing import Annotated

from fastapi import BackgroundTasks, Depends, HTTPException, Request, UploadFile
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from ..config import Settings
from ..errors import Refused
from ..governance import approvals
from ..governance import report as transparency
from ..governance.actors import Actor, NotAuthenticated, NotPermitted, find_session, user_for_token
from ..search import Searcher
from ..search import opt_out as opt_outs
from ..store import Database, WebSession
from ..store.media import MediaStore
from . import cpu

HERE = Path(__file__).parent
SESSION_COOKIE = "ft_session"
LOGIN_CSRF_COOKIE = "ft_login_csrf"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

templates = Jinja2Templates(directory=[HERE / "templates", transparency.TEMPLATES])


# The app's parts (set up by create_app and its lifespan)


def settings(request: Request) -> Settings:
    """The app's settings, with the face model of its searcher (which follows a model switch:
    Searcher.following), so what a request records names the model that described its faces."""
    searcher = getattr(request.app.state, "searcher", None)
    return request.app.state.settings if searcher is None else searcher.settings


def searcher(request: Request) -> Searcher:
    return request.app.state.searcher


def database(request: Request) -> Database:
    return request.app.state.db


def media(request: Request) -> MediaStore:
    return request.app.state.media


# Where the request comes from


def _trusted(host: str, request: Request) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in settings(request).trusted_networks)


def client_address(request: Request) -> str:
    """The client's address: the connecting peer, unless the peer is a trusted proxy; then the
    nearest address in X-Forwarded-For (read from the right) that is not a trusted proxy.
    Entries a client wrote itself are left of those its proxies added, so they are never reached."""
    peer = request.client.host if request.client else "unknown"
    if not _trusted(peer, request):
        return peer
    hops = [hop.strip() for value in request.headers.getlist("x-forwarded-for") for hop in value.split(",")]
    address = peer
    for hop in reversed([hop for hop in hops if hop]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # not what a proxy writes: stop at the last good address
        address = hop
        if not _trusted(hop, request):
            break
    return address


def scheme(request: Request) -> str:
    """http or https as the client used it: X-Forwarded-Proto only from a trusted proxy."""
    if request.client and _trusted(request.client.host, request):
        forwarded = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
        if forwarded in ("http", "https"):
            return forwarded
    return request.url.scheme


# Who is calling


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a, b)


def browser_session(request: Request) -> WebSession | None:
    """The signed-in session of this request's cookie, if any (user loaded)."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    with database(request).session() as session:
        web = find_session(session, secret)
        if web is not None:
            web.user  # noqa: B018 - load it before the session closes
        return web


async def authenticate(request: Request, permission: str | None = None) -> Actor:
    """The caller as an Actor; NotAuthenticated if unknown, NotPermitted without the
    permission or (browser sessions) without the CSRF token."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):  # the database in a thread: a busy SQLite must not stall the loop
        actor = await run_in_threadpool(token_actor, request, header[7:].strip())
    else:
        web = await run_in_threadpool(browser_session, request)
        if web is None:
            raise NotAuthenticated("Sign in or send an API token (Authorization: Bearer ...).")
        if web.user.must_change_password:
            raise NotPermitted("Change your one-time password first (/account/password).", "password_change_required")
        if request.method not in SAFE_METHODS:
            sent = request.headers.get("x-csrf-token")
            if sent is None and "form" in request.headers.get("content-type", ""):
                sent = (await request.form()).get("csrf_token")
            if not same(sent if isinstance(sent, str) else None, web.csrf_token):
                raise NotPermitted("Missing or wrong CSRF token: reload the page and try again.", "csrf_token_required")
        actor = Actor.of(web.user, "web")
    if permission and not actor.can(permission):
        raise NotPermitted(f"The {actor.role} role may not do this.")
    return actor


def token_actor(request: Request, secret: str) -> Actor:
    with database(request).session() as session, session.begin():
        user = user_for_token(session, secret)
        if user is None:
            raise NotAuthenticated("The API token is not valid (unknown, expired or revoked).")
        return Actor.of(user, "api")


def requires(permission: str | None = None):
    """A dependency: the authenticated caller, who must have `permission` (if given)."""

    async def dependency(request: Request) -> Actor:
        return await authenticate(request, permission)

    return dependency


Caller = Annotated[Actor, Depends(requires())]  # anyone signed in or with a token
MaySearch = Annotated[Actor, Depends(requires("search"))]
MayApprove = Annotated[Actor, Depends(requires("approve"))]  # for a browser session, with the CSRF token


def signed_in_any(request: Request) -> WebSession:
    """The browser session, even one with a one-time password; without one, redirect to /login."""
    web = browser_session(request)
    if web is None:
        raise HTTPException(303, headers={"Location": "/login"})
    return web


def signed_in(request: Request) -> WebSession:
    """A page's dependency: the browser session; without one, the page redirects to /login, and
    with a one-time password still to change, to /account/password."""
    web = signed_in_any(request)
    if web.user.must_change_password:
        raise HTTPException(303, headers={"Location": "/account/password"})
    return web


SignedIn = Annotated[WebSession, Depends(signed_in)]
SignedInAny = Annotated[WebSession, Depends(signed_in_any)]  # only for changing the password


def actor_of(web: WebSession) -> Actor:
    return Actor.of(web.user, "web")


def set_cookie(response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="strict", path="/",
        secure=scheme(request) == "https",
    )


# Shared by pages and API


async def read_upload(request: Request, image: UploadFile, limit: int | None = None) -> bytes:
    """The uploaded bytes, refusing more than the configured limit without reading it all."""
    limit = settings(request).upload_max_bytes if limit is None else limit
    data = await image.read(limit + 1)
    if len(data) > limit:
        raise Refused(f"The photo is larger than the {limit // (1024 * 1024)} MB limit.", "too_large")
    if not data:
        raise Refused("The uploaded file is empty.", "empty")
    return data


async def read_uploads(request: Request, images: list[UploadFile]) -> list[bytes]:
    """Several uploaded photos, together within the one upload limit (what a server holds for one
    request stays bounded however many photos it carries)."""
    total = settings(request).upload_max_bytes
    photos: list[bytes] = []
    for image in images:
        left = total - sum(map(len, photos))
        try:
            photos.append(await read_upload(request, image, left))
        except Refused as exc:
            if exc.code != "too_large" or len(images) == 1:
                raise
            raise Refused(f"The photos together are larger than the {total // (1024 * 1024)} MB limit: send fewer "
                          "or smaller photos.", "too_large") from None
    return photos


def approval_queue(request: Request) -> list[dict]:
    """Searches waiting for a supervisor, each with what its audit entry says."""
    with database(request).session() as session:
        return approvals.queue(session)


async def take_opt_out(request: Request, images: list[UploadFile], statement: str, contact: str,
                       later: BackgroundTasks) -> None:
    """An opt-out (1-10 photos) from the page or the API: raises Refused, or returns once it is
    recorded; the matching faces are removed after the answer (`later`), so it takes the same time
    whether or not the person was indexed. Rate-limited per client address, before anything is read."""
    limit, client = request.app.state.opt_out_limit, client_address(request)
    retry = limit.hit(client)
    if retry is not None:
        raise Refused("Too many requests from here; please try again later.", "rate_limited", retry)
    opt_outs.check_statement(statement)
    opt_outs.check_photo_count(len(images))
    photos = await read_uploads(request, images)
    try:
        await cpu.run(request, opt_outs.take, searcher(request), photos, contact)  # detect, embed
    except Refused as exc:
        if exc.code == "busy":  # the server could not take it: the person's try does not count
            limit.give_back(client)
        raise
    later.add_task(opt_outs.finish, searcher(request), media(request))
