"""Users, passwords (argon2), API tokens and web sessions.

Passwords are stored as argon2 hashes; tokens and session cookies are random secrets of
which only the sha256 is stored. Failed sign-ins are throttled (governance/login.py), never
by locking the account.
Every change here is written to the audit log in the same transaction.
"""

from __future__ import annotations

import functools
import re
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import Refused
from ..store import ApiToken, User, WebSession
from ..store.db import write_lock
from ..store.models import OsLogin
from . import audit, login
from .actors import Actor, find_session, local_client, now, sha256, user_for_token  # noqa: F401 - re-exported
from .roles import ROLES

SESSION_LIFETIME = timedelta(hours=12)
TOKEN_PREFIX = "ft_"
MAX_TOKEN_DAYS = 3650
OS_LOGIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}")  # POSIX-portable names, plus @ (directories)

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


def create_first_admin(session: Session, username: str, actor: Actor | None = None) -> str:
    """The first account, an admin (created by whoever has access to the data folder, `actor`:
    the local operator); returns its one-time password. Refused once any account exists."""
    if session.scalar(select(func.count()).select_from(User)):
        raise AccountError("accounts exist already; an admin adds users with `facetrail user add`")
    _, password = create_user(session, actor, username, "admin")
    return password


def list_users(session: Session) -> list[dict]:
    """Accounts by name: username, role, status (active, locked or disabled), created_at, os_logins
    (the operating-system logins bound to it)."""
    logins: dict[int, list[str]] = {}
    for binding in session.scalars(select(OsLogin).order_by(OsLogin.login)):
        logins.setdefault(binding.user_id, []).append(binding.login)
    return [
        {"username": user.username, "role": user.role, "created_at": user.created_at,
         "status": "disabled" if user.disabled else ("locked" if user.locked_until else "active"),
         "os_logins": logins.get(user.id, [])}
        for user in session.scalars(select(User).order_by(User.username))
    ]


def list_tokens(session: Session) -> list[dict]:
    """API tokens by id (never their secrets): id, user, name, created_at, expires_at (None: never),
    status (active, expired or revoked)."""
    return [
        {"id": token.id, "user": token.user.username, "name": token.name, "created_at": token.created_at,
         "expires_at": token.expires_at,
         "status": "revoked" if token.revoked_at else (
             "expired" if token.expires_at is not None and token.expires_at <= now() else "active")}
        for token in session.scalars(select(ApiToken).order_by(ApiToken.id))
    ]


def _keep_an_admin(session: Session, user: User, change: str) -> None:
    """Refuse to demote or disable the last enabled admin: nobody could manage accounts after it.
    The enabled admins' rows are locked (PostgreSQL), so two admins demoting each other at once
    cannot leave none."""
    if user.role != "admin" or user.disabled:
        return
    write_lock(session, "users")  # SQLite: the count below is read inside this write transaction
    admins = session.scalars(
        select(User.id).where(User.role == "admin", User.disabled.is_(False)).order_by(User.id).with_for_update()
    ).all()
    if admins == [user.id]:
        raise AccountError(f"{user.username!r} is the last enabled admin and cannot be {change}: "
                           "make another account admin first")


def set_role(session: Session, actor: Actor, username: str, role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    user = get_user(session, username)
    if role != "admin":
        _keep_an_admin(session, user, f"made {role}")
    audit.record(session, actor, "user.set_role", user=username, old_role=user.role, role=role)
    user.role = role


def set_disabled(session: Session, actor: Actor, username: str, disabled: bool) -> None:
    user = get_user(session, username)
    if disabled:
        _keep_an_admin(session, user, "disabled")
    user.disabled = disabled
    audit.record(session, actor, "user.disable" if disabled else "user.enable", user=username)


def reset_password(session: Session, actor: Actor, username: str) -> str:
    """A new one-time password for `username`. A reset is what an admin does when an account's
    secrets may be known to someone else, so it also ends the account's web sessions and revokes
    its API tokens (both counted in the audit entry): nothing issued before the reset still works."""
    user = get_user(session, username)
    password = new_password()
    user.password_hash, user.must_change_password = _hasher.hash(password), True
    user.failed_logins, user.locked_until = 0, None
    sessions = session.scalars(select(WebSession).where(WebSession.user_id == user.id)).all()
    for web in sessions:
        session.delete(web)
    tokens = session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))).all()
    for token in tokens:
        token.revoked_at = now()
    audit.record(session, actor, "user.reset_password", user=username, sessions_ended=len(sessions),
                 tokens_revoked=[token.id for token in tokens])
    return password


def change_password(session: Session, user: User, old: str, new: str, via: str = "web",
                    os_user: str | None = None) -> None:
    if len(new) < 12:
        raise AccountError("the new password must have at least 12 characters")
    try:
        _hasher.verify(user.password_hash, old)
    except (VerificationError, InvalidHashError):
        raise AccountError("the current password is wrong") from None
    if old == new:
        raise AccountError("the new password must differ from the old one")
    user.password_hash, user.must_change_password = _hasher.hash(new), False
    audit.record(session, Actor.of(user, via, os_user), "user.change_password", user=user.username)


def authenticate(session: Session, username: str, password: str, via: str, client: str | None = None) -> User:
    """The user, if the password is right and the account usable. Every attempt is audited (with
    the client address) and throttled by governance/login.py: the caller commits the session even
    when this raises (AccountError, or LoginThrottled before any password is checked).

    Unknown, disabled and wrong all answer "wrong username or password" after the same work
    (one argon2 verification, against a dummy hash when there is no usable account)."""
    username = username[:100]  # no account name is longer than 64: what is recorded stays small
    login.check(session, username, client, via)
    client = client or login.LOCAL
    user = session.scalar(select(User).where(User.username == username))
    usable = user is not None and not user.disabled
    try:
        _hasher.verify(user.password_hash if usable else _dummy_hash(), password)
        right = usable
    except (VerificationError, InvalidHashError):
        right = False
    if not right:
        reason = "unknown user" if user is None else "disabled" if user.disabled else "wrong password"
        audit.record(session, None, "login.failed", user=username, via=via, client=client, reason=reason)
        raise AccountError("wrong username or password")
    if user.failed_logins or user.locked_until:  # columns of the lockout this throttling replaced
        user.failed_logins, user.locked_until = 0, None
    audit.record(session, Actor.of(user, via), "login", user=username, client=client)
    return user


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def create_token(
    session: Session, actor: Actor, username: str, name: str, days: int | None = 90
) -> tuple[ApiToken, str]:
    """A new API token for a user; returns (row, secret). The secret is shown once, never stored.
    It expires after `days` (1 to 3650), or never with `days` None."""
    if days is not None and not 1 <= days <= MAX_TOKEN_DAYS:
        raise AccountError(f"a token lasts 1 to {MAX_TOKEN_DAYS} days (or 0: never); not {days}")
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


def change_password_of(session: Session, username: str, old: str, new: str, os_user: str | None = None) -> None:
    """Change an account's password from the command line: the current password (one-time or not)
    is checked as a login attempt (throttled, audited; the caller commits even when this raises)."""
    user = authenticate(session, username, old, via="cli", client=local_client(os_user))
    change_password(session, user, old, new, via="cli", os_user=os_user)


def bind_os_login(session: Session, actor: Actor, username: str, login: str) -> None:
    """Let the operating-system login `login` act as `username` from the command line without a
    password or token. A login acts for one account at most (so one person cannot both request
    and approve a search through bindings)."""
    user = get_user(session, username)
    if not OS_LOGIN.fullmatch(login):
        raise AccountError("an operating-system login is 1-64 letters, digits, '.', '-', '_' or '@'")
    bound = session.scalar(select(OsLogin).where(OsLogin.login == login))
    if bound is not None:
        raise AccountError(f"the login {login!r} is bound to {bound.user.username!r} already; "
                           "a login acts for one account (unbind it first)")
    session.add(OsLogin(login=login, user_id=user.id, created_at=now(), created_by=actor.username))
    session.flush()
    audit.record(session, actor, "user.bind_os_login", user=username, login=login)


def unbind_os_login(session: Session, actor: Actor, username: str, login: str) -> None:
    user = get_user(session, username)
    bound = session.scalar(select(OsLogin).where(OsLogin.login == login, OsLogin.user_id == user.id))
    if bound is None:
        raise AccountError(f"the login {login!r} is not bound to {username!r}")
    session.delete(bound)
    audit.record(session, actor, "user.unbind_os_login", user=username, login=login)


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
