"""Watches: `watch request PHOTO... --case REF` (a member of the case), `watch approve|renew ID`
(another supervisor), `watch stop ID` (its owner or a supervisor), `watch list [--case REF]`,
`watch inbox` (the hits of your watches). Every change is recorded; see governance/watches.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import acting, err, literal, open_db, out

commands = typer.Typer()
watch_app = typer.Typer(help="Watches: standing searches under a case that report new appearances.",
                        no_args_is_help=True)
commands.add_typer(watch_app, name="watch")


def _change(ctx: typer.Context, permission: str, change, *args, **kwargs) -> dict:
    """`change(session, actor, *args, **kwargs)` in one transaction; the watch as described."""
    from ..governance import watches

    db = open_db(ctx.obj.settings)
    actor = acting(ctx, db, permission)
    with db.session() as session, session.begin():
        return watches.describe(session, change(session, actor, *args, **kwargs))


def _until(watch: dict) -> str:
    return (watch["expires_at"] or "")[:16].replace("T", " ")


@watch_app.command("request")
def request(
    ctx: typer.Context,
    photos: Annotated[list[Path], typer.Argument(help="1-10 photos of the person (each photo's largest face).")],
    case: Annotated[str, typer.Option(help="The open case it is under; you must be a member.")],
    days: Annotated[int, typer.Option(help="How long it runs once approved (1-30).")] = 30,
    webhook: Annotated[str | None, typer.Option(help="Also POST each hit (JSON, no face or image) here.")] = None,
    email: Annotated[str | None, typer.Option(help="Also email each hit (no face or image) to this address.")] = None,
) -> None:
    """Ask for a watch (recorded); a supervisor other than you approves it."""
    from ..governance import watches
    from ..search import Searcher

    for photo in photos:
        if not photo.is_file():
            err.print(f"[red]error:[/] no such file: {literal(photo)}")
            raise typer.Exit(2)
    settings = ctx.obj.settings
    db = open_db(settings)
    actor = acting(ctx, db, "search")
    vectors, shas = watches.templates_by_model(settings, [p.read_bytes() for p in photos],
                                               Searcher.open(settings, db).faces_in)
    with db.session() as session, session.begin():
        watch = watches.describe(session, watches.request(session, settings, actor, case, vectors, shas, days=days,
                                                          webhook=webhook, email=email))
    out.print(f"Watch {watch['id']} requested under case {literal(repr(watch['case_ref']))} for {watch['days']} "
              "days; a supervisor approves it (`facetrail watch approve ID`).", soft_wrap=True)


@watch_app.command("approve")
def approve(ctx: typer.Context, watch_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Approve a requested watch (supervisors, not for their own watch; recorded)."""
    from ..governance.watches import approve as approve_watch

    watch = _change(ctx, "approve", approve_watch, watch_id)
    out.print(f"Watch {watch['id']} is {watch['state']} until {_until(watch)} UTC.")


@watch_app.command("renew")
def renew(ctx: typer.Context, watch_id: Annotated[int, typer.Argument(metavar="ID")],
          days: Annotated[int, typer.Option(help="Days from now (1-30).")]) -> None:
    """Approve a watch anew for DAYS from now (supervisors; recorded)."""
    from ..governance.watches import renew as renew_watch

    watch = _change(ctx, "approve", renew_watch, watch_id, days)
    out.print(f"Watch {watch['id']} is {watch['state']} until {_until(watch)} UTC.")


@watch_app.command("stop")
def stop(ctx: typer.Context, watch_id: Annotated[int, typer.Argument(metavar="ID")],
         reason: Annotated[str, typer.Option(help="Why (recorded).")] = "") -> None:
    """Stop a watch (its owner or a supervisor; recorded)."""
    from ..governance.watches import stop as stop_watch

    watch = _change(ctx, "cases.read", stop_watch, watch_id, reason)
    out.print(f"Watch {watch['id']} stopped.")


@watch_app.command("list")
def listing(
    ctx: typer.Context,
    case: Annotated[str | None, typer.Option(help="Only this case's watches.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Watches newest first: all for supervisors, auditors and admins; an investigator's own and
    those of their cases."""
    from ..governance import watches

    db = open_db(ctx.obj.settings)
    actor = acting(ctx, db, "cases.read")
    with db.session() as session:
        listed = watches.listing(session, actor, case)
    if as_json:
        sys.stdout.write(json.dumps(listed) + "\n")
        return
    if not listed:
        out.print("No watches.")
        return
    table = Table("id", "case", "owner", "state", "until", "approved by", "hits", "withheld", "notifies")
    for w in listed:
        notifies = ", ".join(x for x in ("inbox", w["webhook"] and "webhook", w["email"] and "email") if x)
        table.add_row(str(w["id"]), literal(w["case_ref"]), literal(w["owner"]), w["state"], _until(w),
                      literal(w["approved_by"] or "—"), str(w["hits"]), str(w["withheld"]), notifies)
    out.print(table)


@watch_app.command("inbox")
def inbox(ctx: typer.Context,
          as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False) -> None:
    """The hits of your watches, newest first; each is a search of yours (`facetrail results ID`)."""
    from ..governance import watches

    settings = ctx.obj.settings
    db = open_db(settings)
    actor = acting(ctx, db, "search")
    with db.session() as session, session.begin():
        hits = watches.inbox(session, settings, actor)
    if as_json:
        sys.stdout.write(json.dumps(hits) + "\n")
        return
    if not hits:
        out.print("No hits.")
        return
    table = Table("hit", "when", "watch", "case", "search", "face", "distance", "state", "notified")
    for h in hits:
        notified = ", ".join(f"{channel} {d['state']}" for channel, d in (h["delivery"] or {}).items())
        table.add_row(str(h["id"]), h["at"][:16].replace("T", " "), str(h["watch_id"]), literal(h["case_ref"]),
                      str(h["search_id"] or "—"), str(h["face_id"]), f"{h['distance']:.3f}", h["state"],
                      notified or "—")
    out.print(table)
