"""Who is acting: an account proven by an API token, a web session, a password or an admin-made
binding to an operating-system login; the local operator; a data subject; or the system itself.

Both front doors (web, CLI) ask this module who the caller is, then check a permission with
`require`; the audit log records the actor's name and kind (`Actor.kind`), and for the command
line the operating-system login of the real user id (`os_login`), which environment variables
cannot change.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import Refused
from ..store import ApiToken, User, WebSession
from ..store.models import OsLogin
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
        """The audit log's actor_kind: user:ROLE, public for a data subject, system for facetrail itself."""
        return self.role if self.role in ("public", "system") else f"user:{self.role}"

    def audit_details(self) -> dict:
        """What every audit entry of this actor says about where the action came from."""
        return {} if self.role == "public" else {"via": self.via, "os_user": self.os_user}

    @classmethod
    def of(cls, user: User, via: str, os_user: str | None = None) -> Actor:
        return cls(user.username, user.role, via, user.id, os_user)


DATA_SUBJECT = Actor("data-subject", "public", "web")


def os_login() -> str:
    """The operating-system login of this process's real user id. Not $USER, $LOGNAME or
    getpass.getuser(), which read environment variables anyone can set."""
    import pwd

    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a user id without a passwd entry (some containers)
        return f"uid:{uid}"


def local_client(os_user: str | None) -> str | None:
    """The 'client address' of a password typed at the command line: the OS login, so sign-in
    entries name it and throttling counts per login (governance/login.py)."""
    return f"local:{os_user}" if os_user else None


def system(via: str, os_user: str | None = None) -> Actor:
    """facetrail itself (settings changes, retention) run from a front door, with the OS login
    that started it; its role may do nothing."""
    return Actor("system", "system", via, None, os_user)


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


PROOF = ("acting as {name!r} needs proof: its API token (FACETRAIL_TOKEN or --token), its password "
         "(asked at a terminal, or given on standard input with --password-stdin), or a binding of the "
         "account to your operating-system login {login!r} made by an admin "
         "(`facetrail user bind-os-user {name} {login}`)")


def by_token(session: Session, secret: str, via: str, os_user: str | None = None) -> Actor:
    user = user_for_token(session, secret)
    if user is None:
        raise NotAuthenticated("the API token is not valid (unknown, expired or revoked)")
    return Actor.of(user, via, os_user)


def _usable(session: Session, username: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username))
    return None if user is None or user.disabled else user


def is_bound(session: Session, username: str, login: str) -> bool:
    """Whether an admin bound this operating-system login to this (enabled) account."""
    user = _usable(session, username)
    binding = session.scalar(select(OsLogin).where(OsLogin.login == login))
    return user is not None and binding is not None and binding.user_id == user.id


def by_os_login(session: Session, username: str, login: str, via: str = "cli") -> Actor:
    """The account, if an admin bound the operating-system login `login` (the real uid's) to it."""
    if not is_bound(session, username, login):
        raise NotAuthenticated(PROOF.format(name=username, login=login))
    return Actor.of(_usable(session, username), via, login)


def by_password(session: Session, username: str, password: str, via: str, os_user: str | None = None) -> Actor:
    """The account, if the password is right: a login attempt, counted and audited like the web's.
    The caller commits even when this raises, so failed attempts count. A one-time password
    proves nothing until it is changed (`facetrail password`)."""
    from .accounts import authenticate  # accounts imports this module

    user = authenticate(session, username, password, via=via, client=local_client(os_user))
    if user.must_change_password:
        raise NotAuthenticated(f"the password of {username!r} is a one-time password: change it first "
                               "(`facetrail --as NAME password`, or sign in to the web app)")
    return Actor.of(user, via, os_user)


def identify(session: Session, *, token: str | None, username: str | None, password: str | None,
             os_user: str, via: str = "cli") -> Actor:
    """Who is acting at the command line, proven by a token, a password or an OS-login binding.
    A name alone (--as, FACETRAIL_USER) proves nothing."""
    if token:
        actor = by_token(session, token, via, os_user)
        if username and username != actor.username:
            raise NotAuthenticated(f"the API token is not {username!r}'s")
        return actor
    if not username:
        raise NotAuthenticated("who is acting? Give FACETRAIL_TOKEN (or --token), or --as USERNAME with "
                               "its password or an OS-login binding")
    if password is not None:
        return by_password(session, username, password, via, os_user)
    return by_os_login(session, username, os_user, via)


def require(actor: Actor, permission: str) -> Actor:
    """The actor, if its role has the permission; else NotPermitted."""
    if not actor.can(permission):
        raise NotPermitted(f"the {actor.role} role may not do this ({permission})")
    return actor
