"""Who is calling: a bearer token (API clients) or a signed-in browser session (the pages).

Browser sessions are cookies (HttpOnly, SameSite=Strict); every state-changing request made
with one must carry the session's CSRF token (form field `csrf_token` or header
`X-CSRF-Token`). Bearer-token calls need no CSRF token: browsers never add them on their own.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from ..governance.actors import Actor, find_session, user_for_token
from ..store import WebSession

SESSION_COOKIE = "ft_session"
LOGIN_CSRF_COOKIE = "ft_login_csrf"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class Unauthenticated(HTTPException):
    def __init__(self, message: str = "Sign in or send an API token (Authorization: Bearer ...).") -> None:
        super().__init__(401, message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(HTTPException):
    def __init__(self, message: str) -> None:
        super().__init__(403, message)


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a, b)


def browser_session(request: Request) -> WebSession | None:
    """The signed-in session of this request's cookie, if any (user loaded)."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    with request.app.state.db.session() as session:
        web = find_session(session, secret)
        if web is not None:
            web.user  # noqa: B018 - load it before the session closes
        return web


async def authenticate(request: Request, permission: str | None = None) -> Actor:
    """The caller as an Actor; 401 if unknown, 403 without the permission or a CSRF token."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        with request.app.state.db.session() as session, session.begin():
            user = user_for_token(session, header[7:].strip())
            if user is None:
                raise Unauthenticated("The API token is not valid (unknown, expired or revoked).")
            actor = Actor.of(user, "api")
    else:
        web = browser_session(request)
        if web is None:
            raise Unauthenticated()
        if request.method not in SAFE_METHODS:
            sent = request.headers.get("x-csrf-token")
            if sent is None and "form" in request.headers.get("content-type", ""):
                sent = (await request.form()).get("csrf_token")
            if not same(sent if isinstance(sent, str) else None, web.csrf_token):
                raise Forbidden("Missing or wrong CSRF token: reload the page and try again.")
        if web.user.must_change_password:
            raise Forbidden("Change your one-time password first (/account/password).")
        actor = Actor.of(web.user, "web")
    if permission and not actor.can(permission):
        raise Forbidden(f"The {actor.role} role may not do this.")
    return actor
