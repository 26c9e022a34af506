"""Accounts and API tokens: `init` (the first admin), `user ...` and `token ...` (admins), `password`
(change your own). Every name printed goes through `literal`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .common import Context, acting, literal, open_db, out

commands = typer.Typer()
user_app = typer.Typer(help="Manage user accounts (admin).", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens (admin).", no_args_is_help=True)
commands.add_typer(user_app, name="user")
commands.add_typer(token_app, name="token")


@commands.command()
def init(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The first admin's name.")] = "admin",
    token: Annotated[
        bool, typer.Option("--token", help="Also print an API token of the first admin (for scripts; shown once).")
    ] = False,
) -> None:
    """Create the first admin account (only on a database without accounts; recorded as the local
    operating-system account) and print its one-time password."""
    from ..governance.accounts import create_first_admin, create_token
    from ..governance.actors import local_operator, os_login
    from ..governance.checkpoints import Verifier, ensure_key

    db = open_db(ctx.obj.settings)
    operator = local_operator(os_login())
    with db.session() as session, session.begin():
        password = create_first_admin(session, username, operator)
        secret = create_token(session, operator, username, "init")[1] if token else None
    out.print(f"Admin {literal(repr(username))} created. One-time password (change it at first login): "
              f"{password}", soft_wrap=True)
    key, made = ensure_key(ctx.obj.settings)  # signs the audit log's checkpoints; never in the database
    out.print(("Audit signing key created: " if made else "Audit signing key: ")
              + literal(ctx.obj.settings.audit_key_path if not ctx.obj.settings.audit_key else "FACETRAIL_AUDIT_KEY")
              + f"\nIts verifier key (give it to whoever checks the log): {Verifier.of(ctx.obj.settings, key).text()}",
              soft_wrap=True)
    if secret:
        out.print(f"API token of {literal(repr(username))} (90 days; shown only now, keep it secret): {secret}",
                  soft_wrap=True)


def _as_admin(ctx: typer.Context, change, *args):
    """Run `change(session, actor, *args)` for an account manager, in one transaction."""
    db = open_db(ctx.obj.settings)
    actor = acting(ctx, db, "users.manage")
    with db.session() as session, session.begin():
        return change(session, actor, *args)


def _listing(ctx: typer.Context, listing) -> list[dict]:
    db = open_db(ctx.obj.settings)
    acting(ctx, db, "users.manage")
    with db.session() as session:
        return listing(session)


def _name(value: str) -> str:
    """A user-supplied name, quoted and printed literally."""
    return literal(repr(value))


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    username: str,
    role: Annotated[str, typer.Option(help="admin, supervisor, investigator or auditor.")],
    os_user: Annotated[
        list[str] | None,
        typer.Option("--os-user", help="Operating-system login that may act as this account with --as "
                     "(repeatable; a login acts for one account)."),
    ] = None,
) -> None:
    """Add an account; prints its one-time password."""
    from ..governance.accounts import bind_os_login, create_user

    def add(session, actor):
        _, password = create_user(session, actor, username, role)
        for login in os_user or ():
            bind_os_login(session, actor, username, login)
        return password

    password = _as_admin(ctx, add)
    bound = f" Bound to the OS login(s) {', '.join(map(_name, os_user))}." if os_user else ""
    out.print(f"User {_name(username)} ({literal(role)}) created. One-time password: {password}{bound}",
              soft_wrap=True)


@user_app.command("bind-os-user")
def user_bind_os_user(ctx: typer.Context, username: str, login: str) -> None:
    """Let an operating-system login act as an account with --as, without its password (checked
    against the real user id running `facetrail`)."""
    from ..governance.accounts import bind_os_login

    _as_admin(ctx, bind_os_login, username, login)
    out.print(f"The OS login {_name(login)} may now act as {_name(username)}.")


@user_app.command("unbind-os-user")
def user_unbind_os_user(ctx: typer.Context, username: str, login: str) -> None:
    """Remove an operating-system login's binding to an account."""
    from ..governance.accounts import unbind_os_login

    _as_admin(ctx, unbind_os_login, username, login)
    out.print(f"The OS login {_name(login)} no longer acts as {_name(username)}.")


@user_app.command("list")
def user_list(ctx: typer.Context) -> None:
    """List accounts, with the operating-system logins bound to them."""
    from ..governance.accounts import list_users

    table = Table("username", "role", "status", "created", "os logins")
    for user in _listing(ctx, list_users):
        table.add_row(literal(user["username"]), literal(user["role"]), user["status"],
                      user["created_at"].strftime("%Y-%m-%d"), literal(", ".join(user["os_logins"])))
    out.print(table)


@user_app.command("disable")
def user_disable(ctx: typer.Context, username: str) -> None:
    """Disable an account (it can no longer sign in or use its tokens); never the last enabled admin."""
    from ..governance.accounts import set_disabled

    _as_admin(ctx, set_disabled, username, True)
    out.print(f"User {_name(username)} disabled.")


@user_app.command("enable")
def user_enable(ctx: typer.Context, username: str) -> None:
    """Enable a disabled account."""
    from ..governance.accounts import set_disabled

    _as_admin(ctx, set_disabled, username, False)
    out.print(f"User {_name(username)} enabled.")


@user_app.command("set-role")
def user_set_role(ctx: typer.Context, username: str, role: str) -> None:
    """Change an account's role (the last enabled admin stays admin)."""
    from ..governance.accounts import set_role

    _as_admin(ctx, set_role, username, role)
    out.print(f"User {_name(username)} is now {literal(role)}.")


@user_app.command("reset-password")
def user_reset_password(ctx: typer.Context, username: str) -> None:
    """Give an account a new one-time password; its web sessions end and its API tokens are revoked."""
    from ..governance.accounts import reset_password

    password = _as_admin(ctx, reset_password, username)
    out.print(f"New one-time password for {_name(username)}: {password}", soft_wrap=True)


@commands.command("password")
def password_command(
    ctx: typer.Context,
) -> None:
    """Change your own password (--as NAME): the current one (a one-time password too) and the new one
    twice are asked at the terminal, or read as three lines with --password-stdin."""
    import getpass
    import sys

    from ..governance.accounts import AccountError, change_password_of

    context: Context = ctx.obj
    if not context.as_user:
        raise AccountError("whose password? Give --as NAME")
    if context.password_stdin:
        current, new, again = (sys.stdin.readline().rstrip("\r\n") for _ in range(3))
    else:
        current = getpass.getpass(f"Current password of {context.as_user}: ")
        new, again = getpass.getpass("New password: "), getpass.getpass("New password again: ")
    if new != again:
        raise AccountError("the two new passwords differ")
    from ..governance.actors import os_login

    db = open_db(context.settings)
    with db.session() as session:
        try:
            change_password_of(session, context.as_user, current, new, os_login())
        finally:
            session.commit()  # a wrong current password counts as a failed login
    out.print(f"Password of {_name(context.as_user)} changed.")


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="The account the token acts for.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    days: Annotated[int, typer.Option(help="Days until it expires, 1 to 3650 (0: never).")] = 90,
) -> None:
    """Create an API token; it is shown once."""
    from ..governance.accounts import create_token

    token, secret = _as_admin(ctx, create_token, user, name, None if days == 0 else days)
    out.print(f"Token {token.id} for {_name(user)}: {secret}\nIt is shown only now; keep it secret.", soft_wrap=True)


@token_app.command("list")
def token_list(ctx: typer.Context) -> None:
    """List API tokens (never their secrets): active, expired or revoked."""
    from ..governance.accounts import list_tokens

    table = Table("id", "user", "name", "created", "expires", "status")
    for token in _listing(ctx, list_tokens):
        table.add_row(
            str(token["id"]), literal(token["user"]), literal(token["name"]), token["created_at"].strftime("%Y-%m-%d"),
            token["expires_at"].strftime("%Y-%m-%d") if token["expires_at"] else "never", token["status"],
        )
    out.print(table)


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, token_id: int) -> None:
    """Revoke an API token at once."""
    from ..governance.accounts import revoke_token

    _as_admin(ctx, revoke_token, token_id)
    out.print(f"Token {token_id} revoked.")
