"""What every command shares: the context, opening the database, who is acting, refusing, progress.

Nothing here imports a command module: the command modules import this one.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from typer.core import TyperGroup

from ..config import Settings
from ..errors import Refused

if TYPE_CHECKING:
    from ..governance.actors import Actor
    from ..store import Database

out = Console()
err = Console(stderr=True)


@dataclass
class Context:
    settings: Settings
    as_user: str | None
    token: str | None


def refuse(message: str) -> NoReturn:
    """Print `refused: MESSAGE` on standard error and exit with status 2."""
    err.print(f"[red]refused:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


def refused(exc: Refused) -> NoReturn:
    """Refuse with a `Refused`'s message; a wait that would help (rate limits) is said in minutes."""
    message = str(exc)
    if exc.retry_after is not None:
        message += f" (in {exc.retry_after / 60:.0f} min)"
    refuse(message)


class RefusingGroup(TyperGroup):
    """The app's command group: a `Refused` raised by any command becomes `refused: ...`, exit 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Refused as exc:
            refused(exc)


def open_db(settings: Settings) -> Database:
    """The database, migrated; a change of settings since the last command is recorded first."""
    from ..governance.settings_log import record_if_changed
    from ..store import Database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    with db.session() as session, session.begin():
        record_if_changed(session, settings)
    return db


def acting(ctx: typer.Context, db: Database, permission: str) -> Actor:
    """Who runs this command, from FACETRAIL_TOKEN or --as; refused without the permission."""
    from ..governance.actors import NotAuthenticated, by_account, by_token, require

    context: Context = ctx.obj
    if not (context.token or context.as_user):
        raise NotAuthenticated("who is acting? Give --as USERNAME (or FACETRAIL_USER) or FACETRAIL_TOKEN")
    with db.session() as session, session.begin():  # a token's use is recorded (last_used_at)
        if context.token:
            actor = by_token(session, context.token, "cli", getpass.getuser())
        else:
            actor = by_account(session, context.as_user, "cli", getpass.getuser())
    return require(actor, permission)


def operator(ctx: typer.Context, db: Database) -> Actor:
    """Who declares sources and ingests: --as / FACETRAIL_TOKEN (an admin) if given, else the local
    operating-system account (access to the data folder is an operator's access); both audited."""
    from ..governance.actors import local_operator

    context: Context = ctx.obj
    if context.token or context.as_user:
        return acting(ctx, db, "sources.manage")
    return local_operator(getpass.getuser())


def with_workers(settings: Settings, workers: int | None) -> Settings:
    """The settings with --workers applied."""
    return settings.model_copy(update={"workers": workers}) if workers else settings


def progress() -> Progress:
    """A progress bar on standard error (standard output stays for results)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )
