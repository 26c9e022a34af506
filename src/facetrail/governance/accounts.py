"""Users, passwords (argon2), API tokens and web sessions.

Passwords are stored as argon2 hashes; tokens and session cookies are random secrets of
which only the sha256 is stored. Repeated failed logins lock the account for a while.
Every change here is written to the audit log in the same transaction.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import Refused
from ..store import ApiToken, User, WebSession
from . import audit
from .actors import Actor, find_session, now, sha256, user_for_token  # noqa: F401 - re-exported
from .roles import ROLES

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
SESSION_LIFETIME = timedelta(hours=12)
TOKEN_PREFIX = "ft_"

_hasher = PasswordHasher()


class AccountError(Refused):
    """A refused account operation, with a message for a person."""

    code = "account_refused"


def new_password() -> str:
    return secrets.token_urlsafe(12)


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise AccountError(f"no user named {username!r}")
    return user


def create_user(session: Session, actor: Actor | None, username: str, role: str) -> tuple[User, str]:
    """A new account with a one-time password (to be changed at first login). Returns (user, password)."""
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    if not username or len(username) > 64 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise AccountError("a username is 1-64 letters, digits, '.', '-' or '_'")
    if session.scalar(select(User).where(User.username == username)):
        raise AccountError(f"user {username!r} already exists")
    password = new_password()
    user = User(
        username=username,
        password_hash=_hasher.hash(password),
        role=role,
        disabled=False,
        must_change_password=True,
        failed_logins=0,
        created_at=now(),
    )
    session.add(user)
    session.flush()
    audit.record(session, actor, "user.create", user=username, role=role)
    return user, password


def create_first_admin(session: Session, username: str) -> str:
    """The first account, an admin (created by whoever has access to the data folder); returns its
    one-time password. Refused once any account exists."""
    if session.scalar(select(func.count()).select_from(User)):
        raise AccountError("accounts exist already; an admin adds users with `facetrail user add`")
    _, password = create_user(session, None, username, "admin")
    return password


def list_users(session: Session) -> list[dict]:
    """Accounts by name: username, role, status (active, locked or disabled), created_at."""
    return [
        {"username": user.username, "role": user.role, "created_at": user.created_at,
         "status": "disabled" if user.disabled else ("locked" if user.locked_until else "active")}
        for user in session.scalars(select(User).order_by(User.username))
    ]


def list_tokens(session: Session) -> list[dict]:
    """API tokens by id (never their secrets): id, user, name, created_at, expires_at (None: never),
    status (active or revoked)."""
    return [
        {"id": token.id, "user": token.user.username, "name": token.name, "created_at": token.created_at,
         "expires_at": token.expires_at, "status": "revoked" if token.revoked_at else "active"}
        for token in session.scalars(select(ApiToken).order_by(ApiToken.id))
    ]


def set_role(session: Session, actor: Actor, username: str, role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    user = get_user(session, username)
    audit.record(session, actor, "user.set_role", user=username, old_role=user.role, role=role)
    user.role = role


def set_disabled(session: Session, actor: Actor, username: str, disabled: bool) -> None:
    user = get_user(session, username)
    user.disabled = disabled
    audit.record(session, actor, "user.disable" if disabled else "user.enable", user=username)


def reset_password(session: Session, actor: Actor, username: str) -> str:
    user = get_user(session, username)
    password = new_password()
    user.password_hash, user.must_change_password = _hasher.hash(password), True
    user.failed_logins, user.locked_until = 0, None
    audit.record(session, actor, "user.reset_password", user=username)
    return password


def change_password(session: Session, user: User, old: str, new: str) -> None:
    if len(new) < 12:
        raise AccountError("the new password must have at least 12 characters")
    try:
        _hasher.verify(user.password_hash, old)
    except (VerificationError, InvalidHashError):
        raise AccountError("the current password is wrong") from None
    if old == new:
        raise AccountError("the new password must differ from the old one")
    user.password_hash, user.must_change_password = _hasher.hash(new), False
    audit.record(session, Actor.of(user, "web"), "user.change_password", user=user.username)


def authenticate(session: Session, username: str, password: str, via: str) -> User:
    """The user, if the password is right and the account usable. Every attempt is audited and
    failures are counted: the caller commits the session even when this raises AccountError."""
    user = session.scalar(select(User).where(User.username == username))
    failure = "wrong username or password"
    if user is None:
        _hasher.hash(password)  # same work either way, so timing does not reveal which names exist
        audit.record(session, None, "login.failed", user=username, via=via, reason="unknown user")
        raise AccountError(failure)
    if user.disabled:
        audit.record(session, None, "login.failed", user=username, via=via, reason="disabled")
        raise AccountError("this account is disabled")
    locked_until = user.locked_until
    if locked_until and locked_until > now():
        audit.record(session, None, "login.failed", user=username, via=via, reason="locked")
        raise AccountError("too many failed attempts: this account is locked for a while, try again later")
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        user.failed_logins += 1
        reason = "wrong password"
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until, user.failed_logins = now() + LOCKOUT, 0
            reason = "wrong password; account locked"
        audit.record(session, None, "login.failed", user=username, via=via, reason=reason)
        raise AccountError(failure) from None
    user.failed_logins, user.locked_until = 0, None
    audit.record(session, Actor.of(user, via), "login", user=username)
    return user


def create_token(
    session: Session, actor: Actor, username: str, name: str, days: int | None = 90
) -> tuple[ApiToken, str]:
    """A new API token for a user; returns (row, secret). The secret is shown once, never stored."""
    user = get_user(session, username)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=sha256(secret),
        created_at=now(),
        expires_at=now() + timedelta(days=days) if days else None,
    )
    session.add(token)
    session.flush()
    audit.record(session, actor, "token.create", user=username, token_id=token.id, name=name, days=days)
    return token, secret


def revoke_token(session: Session, actor: Actor, token_id: int) -> None:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise AccountError(f"no token {token_id}")
    token.revoked_at = now()
    audit.record(session, actor, "token.revoke", user=token.user.username, token_id=token_id)


def start_session(session: Session, user: User) -> tuple[str, WebSession]:
    secret = secrets.token_urlsafe(32)
    web = WebSession(
        token_hash=sha256(secret),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now(),
        expires_at=now() + SESSION_LIFETIME,
    )
    session.add(web)
    session.flush()
    return secret, web


def end_session(session: Session, secret: str) -> None:
    web = session.scalar(select(WebSession).where(WebSession.token_hash == sha256(secret)))
    if web is not None:
        audit.record(session, Actor.of(web.user, "web"), "logout", user=web.user.username)
        session.delete(web)
