"""Accounts and API tokens: `init` (the first admin), `user ...` and `token ...` (admins)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from .common import acting, open_db, out

commands = typer.Typer()
user_app = typer.Typer(help="Manage user accounts (admin).", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens (admin).", no_args_is_help=True)
commands.add_typer(user_app, name="user")
commands.add_typer(token_app, name="token")


@commands.command()
def init(ctx: typer.Context, username: Annotated[str, typer.Argument(help="The first admin's name.")] = "admin") -> None:
    """Create the first admin account and print its one-time password."""
    from ..governance.accounts import create_first_admin

    db = open_db(ctx.obj.settings)
    with db.session() as session, session.begin():
        password = create_first_admin(session, username)
    out.print(f"Admin {username!r} created. One-time password (change it at first login): {password}")


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


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    username: str,
    role: Annotated[str, typer.Option(help="admin, supervisor, investigator or auditor.")],
) -> None:
    """Add an account; prints its one-time password."""
    from ..governance.accounts import create_user

    _, password = _as_admin(ctx, create_user, username, role)
    out.print(f"User {username!r} ({role}) created. One-time password: {password}")


@user_app.command("list")
def user_list(ctx: typer.Context) -> None:
    """List accounts."""
    from ..governance.accounts import list_users

    table = Table("username", "role", "status", "created")
    for user in _listing(ctx, list_users):
        table.add_row(user["username"], user["role"], user["status"], user["created_at"].strftime("%Y-%m-%d"))
    out.print(table)


@user_app.command("disable")
def user_disable(ctx: typer.Context, username: str) -> None:
    """Disable an account (it can no longer sign in or use its tokens)."""
    from ..governance.accounts import set_disabled

    _as_admin(ctx, set_disabled, username, True)
    out.print(f"User {username!r} disabled.")


@user_app.command("enable")
def user_enable(ctx: typer.Context, username: str) -> None:
    """Enable a disabled account."""
    from ..governance.accounts import set_disabled

    _as_admin(ctx, set_disabled, username, False)
    out.print(f"User {username!r} enabled.")


@user_app.command("set-role")
def user_set_role(ctx: typer.Context, username: str, role: str) -> None:
    """Change an account's role."""
    from ..governance.accounts import set_role

    _as_admin(ctx, set_role, username, role)
    out.print(f"User {username!r} is now {role}.")


@user_app.command("reset-password")
def user_reset_password(ctx: typer.Context, username: str) -> None:
    """Give an account a new one-time password."""
    from ..governance.accounts import reset_password

    password = _as_admin(ctx, reset_password, username)
    out.print(f"New one-time password for {username!r}: {password}")


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="The account the token acts for.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    days: Annotated[int, typer.Option(help="Days until it expires (0: never).")] = 90,
) -> None:
    """Create an API token; it is shown once."""
    from ..governance.accounts import create_token

    token, secret = _as_admin(ctx, create_token, user, name, days or None)
    out.print(f"Token {token.id} for {user!r}: {secret}\nIt is shown only now; keep it secret.", soft_wrap=True)


@token_app.command("list")
def token_list(ctx: typer.Context) -> None:
    """List API tokens (never their secrets)."""
    from ..governance.accounts import list_tokens

    table = Table("id", "user", "name", "created", "expires", "status")
    for token in _listing(ctx, list_tokens):
        table.add_row(
            str(token["id"]), token["user"], token["name"], token["created_at"].strftime("%Y-%m-%d"),
            token["expires_at"].strftime("%Y-%m-%d") if token["expires_at"] else "never", token["status"],
        )
    out.print(table)


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, token_id: int) -> None:
    """Revoke an API token at once."""
    from ..governance.accounts import revoke_token

    _as_admin(ctx, revoke_token, token_id)
    out.print(f"Token {token_id} revoked.")
