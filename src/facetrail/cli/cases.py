"""Cases: `case open|amend|close|add-member|remove-member` (supervisors), `case list|show` (members
see their own cases; supervisors, auditors and admins see all). Every change is recorded."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from .common import acting, literal, open_db, out

commands = typer.Typer()
case_app = typer.Typer(help="Cases that searches are made under (supervisors open and close them).",
                       no_args_is_help=True)
commands.add_typer(case_app, name="case")

Day = Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])]


def _authorisation(authority: str | None, reference: str | None, on: datetime | None, urgent: bool):
    from ..governance.cases import Authorisation

    if authority is None and reference is None and on is None and not urgent:
        return None
    return Authorisation(authority or "", reference, on.date() if on else None, urgent)


def _change(ctx: typer.Context, change, *args, **kwargs):
    """Run `change(session, actor, *args, **kwargs)` for a supervisor, in one transaction."""
    db = open_db(ctx.obj.settings)
    actor = acting(ctx, db, "approve")
    with db.session() as session, session.begin():
        return change(session, actor, *args, **kwargs)


def _read(ctx: typer.Context, reader, *args, **kwargs):
    db = open_db(ctx.obj.settings)
    actor = acting(ctx, db, "cases.read")
    with db.session() as session:
        return reader(session, actor, *args, **kwargs)


@case_app.command("open")
def case_open(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="The case reference, e.g. 2026-NEWS-014 (letters, digits, . _ / : -).")],
    title: Annotated[str, typer.Option(help="What the case is about.")],
    purpose: Annotated[str, typer.Option(help="One of the configured purposes.")],
    authority: Annotated[str, typer.Option(help="Who authorised it (a court, a data-protection officer...).")],
    expires: Annotated[datetime, typer.Option(help="Last day searches may be made under it (at most a year).",
                                              formats=["%Y-%m-%d"])],
    authorisation_ref: Annotated[str | None, typer.Option(help="The authorisation's reference.")] = None,
    authorised_on: Day = None,
    urgent: Annotated[bool, typer.Option(help="The authorisation is requested and must be recorded within 48 hours "
                                              "(`case amend`), or the case stops.")] = False,
    member: Annotated[list[str] | None, typer.Option(help="A user who may search under it (repeatable).")] = None,
) -> None:
    """Open a case (supervisors; recorded)."""
    from ..governance.cases import Authorisation, open_case

    case = _change(ctx, open_case, ref=ref, title=title, purpose=purpose, purposes=ctx.obj.settings.purposes,
                   authorisation=Authorisation(authority, authorisation_ref,
                                               authorised_on.date() if authorised_on else None, urgent),
                   expires_on=expires.date(), members=member or [])
    due = f" Authorisation due by {case.urgent_due:%Y-%m-%d %H:%M} UTC." if case.urgent_due else ""
    out.print(f"Case {literal(repr(case.ref))} opened until {case.expires_on}.{due}", soft_wrap=True)


@case_app.command("amend")
def case_amend(
    ctx: typer.Context,
    ref: str,
    title: Annotated[str | None, typer.Option(help="A new title.")] = None,
    authority: Annotated[str | None, typer.Option(help="Who authorised it.")] = None,
    authorisation_ref: Annotated[str | None, typer.Option(help="The authorisation's reference.")] = None,
    authorised_on: Day = None,
    urgent: Annotated[bool, typer.Option(help="Authorisation requested, due within 48 hours.")] = False,
    expires: Day = None,
) -> None:
    """Change a case's title, authorisation or expiry; completes a case made from earlier free-text
    references (supervisors; recorded with the values before and after)."""
    from ..governance.cases import amend

    case = _change(ctx, amend, ref, title=title,
                   authorisation=_authorisation(authority, authorisation_ref, authorised_on, urgent),
                   expires_on=expires.date() if expires else None)
    out.print(f"Case {literal(repr(case.ref))} amended ({case.status}, until {case.expires_on}).", soft_wrap=True)


@case_app.command("close")
def case_close(ctx: typer.Context, ref: str,
               reason: Annotated[str, typer.Option(help="Why it is closed (recorded).")]) -> None:
    """Close a case: no new searches under it (supervisors; recorded)."""
    from ..governance.cases import close

    _change(ctx, close, ref, reason)
    out.print(f"Case {literal(repr(ref.strip()))} closed.", soft_wrap=True)


@case_app.command("add-member")
def case_add_member(ctx: typer.Context, ref: str, username: str) -> None:
    """Let a user search under a case (supervisors; recorded)."""
    from ..governance.cases import add_member

    _change(ctx, add_member, ref, username)
    out.print(f"{literal(repr(username))} may now search under {literal(repr(ref.strip()))}.", soft_wrap=True)


@case_app.command("remove-member")
def case_remove_member(ctx: typer.Context, ref: str, username: str) -> None:
    """Stop a user searching under a case (supervisors; recorded)."""
    from ..governance.cases import remove_member

    _change(ctx, remove_member, ref, username)
    out.print(f"{literal(repr(username))} may no longer search under {literal(repr(ref.strip()))}.",
              soft_wrap=True)


@case_app.command("list")
def case_list(ctx: typer.Context,
              status: Annotated[str | None, typer.Option(help="open, closed, incomplete, expired or overdue.")] = None
              ) -> None:
    """List cases, newest first (investigators: the cases they are a member of)."""
    from ..governance.cases import listing

    table = Table("case", "state", "purpose", "title", "expires", "members")
    for case in _read(ctx, listing, status=status):
        table.add_row(literal(case["case_ref"]), case["state"], literal(case["purpose"]), literal(case["title"]),
                      case["expires_on"], literal(", ".join(case["members"])))
    out.print(table)


@case_app.command("show")
def case_show(ctx: typer.Context, ref: str) -> None:
    """One case's record."""
    from ..governance.cases import show

    case = _read(ctx, show, ref)
    for key, value in case.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        out.print(f"{key:>18}: {literal('' if shown is None else shown)}", soft_wrap=True)
