"""What every command shares: the context, opening the database, who is acting, refusing, progress,
and `literal`, through which every user-supplied text is printed.

Nothing here imports a command module: the command modules import this one.
"""

from __future__ import annotations

import getpass
import sys
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from typer.core import TyperGroup

from ..config import Settings
from ..errors import Refused

if TYPE_CHECKING:
    from ..governance.actors import Actor
    from ..store import Database

out = Console(emoji=False)  # ":name:" in a user's text stays text
err = Console(stderr=True, emoji=False)


@dataclass
class Context:
    settings: Settings
    as_user: str | None
    token: str | None
    password_stdin: bool = False


_SHOWN_AS_ESCAPES = {"Cc", "Cf", "Zl", "Zp", "Co", "Cs"}  # control, format (bidi), separators, private


def _escaped(char: str) -> str:
    if unicodedata.category(char) not in _SHOWN_AS_ESCAPES:
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def literal(value: object) -> str:
    """`value` as text to print literally through Rich: markup escaped ("[bold]" stays "[bold]"),
    control and format characters (ESC, BEL, newlines, bidi overrides...) shown as escapes
    ("\\x1b"), so text that users supplied (justifications, case refs, names, URLs, paths, audit
    details) can neither style, move, clear nor retitle the terminal that shows it."""
    return escape("".join(_escaped(char) for char in str(value)))


def refuse(message: str) -> NoReturn:
    """Print `refused: MESSAGE` (literally) on standard error and exit with status 2."""
    err.print(f"[red]refused:[/] {literal(message)}", soft_wrap=True)
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
    """The database, migrated; a change of settings since the last command is recorded first. Where
    face_model is not set, `settings` then takes the model of the stored faces (`follow_stored_model`),
    so every command follows `facetrail reembed`."""
    from ..governance.actors import os_login, system
    from ..governance.settings_log import record_if_changed
    from ..store import Database
    from ..store.private import prepare_data_dir

    for warning in prepare_data_dir(settings.data_dir, settings.db_url):  # private: 0700/0600
        print(f"facetrail: warning: {warning}", file=sys.stderr)
    db = Database(settings.db_url)
    with db.session() as session, session.begin():
        record_if_changed(session, settings, system("cli", os_login()))  # who ran the command that noticed
    follow_stored_model(settings, db)
    return db


def follow_stored_model(settings: Settings, db: Database) -> None:
    """Where face_model is not set, make `settings` (in place: the command's own copy, which it goes
    on using) the model of the stored faces (faces/registry.py `in_use`): after `facetrail reembed`,
    the new one. A face_model that is set stays, and is refused (`model_mismatch`) where the index
    is opened if the stored faces are another model's."""
    from ..faces.registry import in_use

    followed = in_use(settings, db)
    if followed is not settings:
        settings.face_model = followed.face_model
        settings.model_fields_set.discard("face_model")  # still followed, not set


def _password(context: Context, session, os_user: str) -> str | None:
    """The password offered for --as NAME: a line of standard input with --password-stdin, else
    asked at a terminal (not echoed) unless the OS login is bound to the account; None: none."""
    from ..governance.actors import is_bound

    if context.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if sys.stdin.isatty() and not is_bound(session, context.as_user, os_user):
        return getpass.getpass(f"Password for {context.as_user}: ")
    return None


def acting(ctx: typer.Context, db: Database, permission: str) -> Actor:
    """Who runs this command, proven by an API token (FACETRAIL_TOKEN, --token), or --as NAME with
    the account's password or an admin-made binding to the real OS login; refused without the
    permission. Every entry the command writes records the OS login (`Actor.os_user`)."""
    from ..governance.actors import identify, os_login, require

    context: Context = ctx.obj
    login = os_login()
    with db.session() as session:
        password = None if context.token or not context.as_user else _password(context, session, login)
        try:
            actor = identify(session, token=context.token, username=context.as_user, password=password,
                             os_user=login)
        finally:
            session.commit()  # a failed password counts (and is audited); a token's use is recorded
    return require(actor, permission)


def operator(ctx: typer.Context, db: Database) -> Actor:
    """Who declares sources and ingests: an account proven as for `acting` (an admin) if named, else
    the local operating-system account (access to the data folder is an operator's access), named
    by the real user id; both audited."""
    from ..governance.actors import local_operator, os_login

    context: Context = ctx.obj
    if context.token or context.as_user:
        return acting(ctx, db, "sources.manage")
    return local_operator(os_login())


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
