"""Who is acting: an account proven by an API token, a web session or a named local account,
the local operator, a data subject, or the system itself.

Both front doors (web, CLI) ask this module who the caller is, then check a permission with
`require`; the audit log records the actor's name and kind (`Actor.kind`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import Refused
from ..store import ApiToken, User, WebSession
from .roles import can


class NotAuthenticated(Refused):
    """Nobody, or nobody valid, is acting: no or a bad token, session or account."""

    code = "not_authenticated"


class NotPermitted(Refused):
    """The actor's role may not do this."""

    code = "not_permitted"


@dataclass(frozen=True)
class Actor:
    """Who is acting, as recorded in the audit log."""

    username: str
    role: str  # an account's role; "public" for a data subject
    via: str  # cli, web, api
    user_id: int | None = None
    os_user: str | None = None

    def can(self, permission: str) -> bool:
        return self.role != "public" and can(self.role, permission)

    @property
    def kind(self) -> str:
        """The audit log's actor_kind: user:ROLE, or public for a data subject."""
        return "public" if self.role == "public" else f"user:{self.role}"

    def audit_details(self) -> dict:
        """What every audit entry of this actor says about where the action came from."""
        return {} if self.role == "public" else {"via": self.via, "os_user": self.os_user}

    @classmethod
    def of(cls, user: User, via: str, os_user: str | None = None) -> Actor:
        return cls(user.username, user.role, via, user.id, os_user)


DATA_SUBJECT = Actor("data-subject", "public", "web")


def local_operator(os_user: str) -> Actor:
    """Someone with access to the data folder, acting without an account (declaring sources, ingest)."""
    return Actor(f"local:{os_user}", "admin", "cli", None, os_user)


def now() -> datetime:
    return datetime.now(UTC)


def sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def user_for_token(session: Session, secret: str) -> User | None:
    """The enabled user a valid (unexpired, unrevoked) token belongs to, or None."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == sha256(secret)))
    if token is None or token.revoked_at is not None:
        return None
    expires = token.expires_at
    if expires is not None and expires <= now():
        return None
    if token.user.disabled:
        return None
    token.last_used_at = now()
    return token.user


def find_session(session: Session, secret: str) -> WebSession | None:
    """The unexpired web session of a cookie's secret, for an enabled user, or None."""
    web = session.scalar(select(WebSession).where(WebSession.token_hash == sha256(secret)))
    if web is None or web.expires_at <= now() or web.user.disabled:
        return None
    return web


def by_token(session: Session, secret: str, via: str, os_user: str | None = None) -> Actor:
    user = user_for_token(session, secret)
    if user is None:
        raise NotAuthenticated("the API token is not valid (unknown, expired or revoked)")
    return Actor.of(user, via, os_user)


def by_account(session: Session, username: str, via: str, os_user: str | None = None) -> Actor:
    """A named account, for someone with local access to the data folder."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotAuthenticated(f"no user named {username!r}")
    if user.disabled:
        raise NotAuthenticated(f"the account {user.username!r} is disabled")
    return Actor.of(user, via, os_user)


def require(actor: Actor, permission: str) -> Actor:
    """The actor, if its role has the permission; else NotPermitted."""
    if not actor.can(permission):
        raise NotPermitted(f"the {actor.role} role may not do this ({permission})")
    return actor
