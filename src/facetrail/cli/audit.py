"""Oversight: `audit verify|export`, the transparency `report`, and `maintenance` (retention)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from .common import acting, err, literal, open_db, out

commands = typer.Typer()
audit_app = typer.Typer(help="Inspect the tamper-evident audit log.", no_args_is_help=True)
commands.add_typer(audit_app, name="audit")


@commands.command()
def report(
    ctx: typer.Context,
    start: Annotated[datetime, typer.Option("--from", help="First day (UTC), e.g. 2026-01-01.", formats=["%Y-%m-%d"])],
    end: Annotated[datetime, typer.Option("--to", help="Last day (UTC), included.", formats=["%Y-%m-%d"])],
    output: Annotated[Path, typer.Option("--out", help="Folder to write report.html, the charts and report.json.")],
) -> None:
    """Write the transparency report for a period (auditors, supervisors, admins; recorded)."""
    from ..governance import report as transparency

    settings = ctx.obj.settings
    db = open_db(settings)
    actor = acting(ctx, db, "audit.read")
    with db.session() as session, session.begin():
        data = transparency.make(session, actor, start.date(), end.date(), settings.match_threshold)
    page = transparency.write(data, output)
    out.print(f"Report for {data['from']} to {data['to']} written to {literal(page)}", soft_wrap=True)


@commands.command()
def maintenance(ctx: typer.Context) -> None:
    """Delete what has outlived its retention window (query descriptors, expired sessions).
    Run it daily (cron or a systemd timer); the server also runs it when it starts."""
    from ..governance.actors import os_login, system
    from ..governance.retention import maintenance as run_maintenance

    settings = ctx.obj.settings
    db = open_db(settings)
    with db.session() as session, session.begin():
        counts = run_maintenance(session, settings, system("cli", os_login()))
    out.print(
        f"Deleted {counts['query_embeddings_deleted']} query descriptors older than {settings.repeat_subject_days} days "
        f"and {counts['sessions_deleted']} expired sessions.",
        soft_wrap=True,
    )


@audit_app.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Check the audit log's hash chain; prints OK or the first broken entry."""
    from ..governance import audit

    db = open_db(ctx.obj.settings)
    acting(ctx, db, "audit.read")
    with db.session() as session:
        count, problem = audit.verify(session)
    if problem:
        out.print(f"BROKEN at entry {problem.entry_id}: {literal(problem.reason)} ({count} entries before it are intact)")
        raise typer.Exit(1)
    out.print(f"OK: {count} entries, chain intact")


@audit_app.command("export")
def audit_export(
    ctx: typer.Context,
    since: Annotated[
        datetime | None, typer.Option(help="Only entries at or after this time (UTC), e.g. 2026-11-01.")
    ] = None,
    output: Annotated[Path | None, typer.Option("--out", help="File to write (default: standard output).")] = None,
) -> None:
    """Write audit entries as JSON Lines, with their hashes, so the chain's head can be kept elsewhere."""
    from ..governance import audit

    db = open_db(ctx.obj.settings)
    actor = acting(ctx, db, "audit.read")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    with db.session() as session, session.begin():  # the export itself is recorded, and included
        audit.record(session, actor, "audit.export", since=since.isoformat() if since else None)
    handle = output.open("w") if output else sys.stdout
    count = 0
    with db.session() as session:
        for line in audit.export(session, since):
            # ASCII JSON: control, bidi and other non-ASCII characters in users' text arrive as \u escapes,
            # so the export can be read in a terminal safely; the parsed entries are the same
            handle.write(json.dumps(line) + "\n")
            count += 1
    if output:
        handle.close()
        err.print(f"{count} entries written to {literal(output)}", soft_wrap=True)
