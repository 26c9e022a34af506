"""Oversight: `audit verify|export|checkpoint|prove|key|status`, the transparency `report`, and
`maintenance` (retention)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from .common import acting, err, literal, open_db, out, refuse

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
        data = transparency.make(session, actor, start.date(), end.date())  # each model's match threshold
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
def audit_verify(
    ctx: typer.Context,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option("--checkpoint", help="A checkpoint file, or a witness's file of many: the log must be "
                                          "consistent with each (repeatable)."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="The verifier key the checkpoints were signed with (text or a file holding "
                                   "it; default: the public half of this installation's signing key)."),
    ] = None,
    tsa_root: Annotated[
        Path | None,
        typer.Option("--tsa-root", help="PEM certificate(s) of the time-stamping authority's root: check the "
                                        "checkpoints' RFC 3161 timestamps too."),
    ] = None,
) -> None:
    """Check the audit log: the hash chain, the Merkle tree recomputed from the entries, the
    append-only triggers, and with --checkpoint the log against checkpoints kept elsewhere.
    Prints OK, or what is wrong and exits 1."""
    from ..governance import audit, auditguards, checkpoints

    db = _open_to_check(ctx.obj.settings)
    acting(ctx, db, "audit.read")
    notes = [c for path in checkpoint or [] for c in _checkpoints_in(path)]
    with db.session() as session, session.begin():
        audit.catch_up(session)  # entries from before the tree (migration 0013)
    with db.session() as session:
        unguarded = auditguards.missing(session)
        if notes:
            result, findings = checkpoints.verify_log(session, notes, _verifier(ctx.obj.settings, key))
        else:
            result, findings = audit.walk(session), []
    failed = _report(result, findings)
    if tsa_root is not None:
        failed = _report_timestamps(notes, tsa_root.read_bytes()) or failed
    if unguarded:
        err.print(f"[red]WARNING:[/] {literal(auditguards.warning(unguarded))}", soft_wrap=True)
    if failed or unguarded:
        raise typer.Exit(1)


def _open_to_check(settings):
    """The database, even when the log is too broken to record the settings change that opening
    it records: checking it is what the refusal asks for."""
    from ..errors import Refused
    from ..store import Database

    try:
        return open_db(settings)
    except Refused as exc:
        if exc.code != "audit_log_broken":
            raise
        err.print(f"[red]WARNING:[/] {literal(exc)}", soft_wrap=True)
        return Database(settings.db_url)


def _checkpoints_in(path: Path) -> list:
    from ..governance import checkpoints

    try:
        return checkpoints.parse(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        refuse(f"cannot read checkpoints from {path}: {exc}")


def _verifier(settings, key: str | None):
    from ..governance import checkpoints

    if key is None:
        signing = checkpoints.load_key(settings)
        return checkpoints.Verifier.of(settings, signing)
    text = Path(key).read_text() if Path(key).is_file() else key
    try:
        return checkpoints.Verifier.parse(text)
    except ValueError as exc:
        refuse(f"not a verifier key: {exc}")


def _report(result, findings) -> bool:
    """Print the walk and each checkpoint's finding; True if anything failed."""
    problem = result.problem
    if problem:
        out.print(f"BROKEN at entry {problem.entry_id}: {literal(problem.reason)} "
                  f"({result.count} entries before it are intact)", soft_wrap=True)
    for finding in findings:
        c = finding.checkpoint
        verdict = "consistent" if finding.problem is None else f"FAILED: {finding.problem}"
        out.print(f"checkpoint {c.size} entries at {c.time.isoformat()}: {literal(verdict)}", soft_wrap=True)
    failed = problem is not None or any(f.problem for f in findings)
    if not failed:
        note = f", consistent with {len(findings)} checkpoint(s)" if findings else ""
        out.print(f"OK: {result.count} entries, chain intact, Merkle tree head {result.head.hex()}{note}",
                  soft_wrap=True)
    return failed


def _report_timestamps(notes, roots: bytes) -> bool:
    """Print each checkpoint's trusted timestamp; True if one is missing or does not verify."""
    from ..governance import checkpoints, timestamps

    failed = False
    for c in notes:
        try:
            when = checkpoints.timestamp(c, roots)
        except timestamps.TimestampError as exc:
            when, failed = None, True
            out.print(f"checkpoint {c.size} entries: timestamp FAILED: {literal(exc)}", soft_wrap=True)
            continue
        failed = failed or when is None
        out.print(f"checkpoint {c.size} entries: " + (f"timestamped by the TSA at {when.isoformat()}" if when
                                                      else "timestamp FAILED: none"), soft_wrap=True)
    return failed


@audit_app.command("checkpoint")
def audit_checkpoint(ctx: typer.Context) -> None:
    """Sign a checkpoint of the log now (needs the signing key), send it to the witnesses and
    print it. The server writes one every few minutes when the log grew, and at shutdown."""
    from ..governance import checkpoints

    settings = ctx.obj.settings
    db = open_db(settings)
    key = checkpoints.load_key(settings)
    with db.session() as session, session.begin():
        row = checkpoints.make(session, settings, key)
    failing = deliver_to_witnesses(db, "red")
    print(row.note, end="")  # a signed note, exactly as signed (save it: verify --checkpoint reads it)
    if failing:
        raise typer.Exit(1)


def deliver_to_witnesses(db, style: str) -> list:
    """Send the checkpoints not delivered yet to the witnesses now; say each witness not reached
    (in `style`: it is retried with the next checkpoint) and return their deliveries."""
    from ..governance import witnesses

    with db.session() as session, session.begin():
        failing = witnesses.deliver_pending(session)
    for delivery in failing:
        err.print(f"[{style}]witness not reached:[/] {literal(delivery.witness)}: {literal(delivery.last_error)} "
                  "(retried with the next checkpoint; see facetrail audit status)", soft_wrap=True)
    return failing


@audit_app.command("prove")
def audit_prove(
    ctx: typer.Context,
    entry_id: Annotated[int | None, typer.Argument(help="The audit entry's id.")] = None,
    since: Annotated[
        Path | None,
        typer.Option("--from", help="Instead: a consistency proof from this checkpoint (a file holding it) "
                                    "to the latest one."),
    ] = None,
) -> None:
    """Print, as JSON, an inclusion proof of one entry against the latest checkpoint (the entry,
    its leaf, the proof, the signed checkpoint), or with --from a consistency proof between two
    checkpoints; docs/audit-verification.md checks either without facetrail."""
    from ..governance import checkpoints

    if (entry_id is None) == (since is None):
        refuse("give an entry id, or --from CHECKPOINT_FILE")
    db = open_db(ctx.obj.settings)
    acting(ctx, db, "audit.read")
    old = _checkpoints_in(since)[-1] if since is not None else None
    with db.session() as session:
        answer = checkpoints.consistency(session, old) if old else checkpoints.prove(session, entry_id).as_json()
    print(json.dumps(answer, indent=2))


@audit_app.command("key")
def audit_key(
    ctx: typer.Context,
    create: Annotated[bool, typer.Option("--create", help="Make the signing key if there is none.")] = False,
) -> None:
    """Print the verifier (public) key of the checkpoints: give it to whoever checks them."""
    from ..governance import checkpoints

    settings = ctx.obj.settings
    key, made = checkpoints.ensure_key(settings) if create else (checkpoints.load_key(settings), False)
    if made:
        err.print(f"Audit signing key created: {literal(settings.audit_key_path)} (0600)", soft_wrap=True)
    print(checkpoints.Verifier.of(settings, key).text())


@audit_app.command("status")
def audit_status(ctx: typer.Context) -> None:
    """The tree, the latest checkpoint, each witness (what it holds, what it is owed, its last
    error) and the append-only triggers. Exits 1 if a witness is behind or a trigger is missing."""
    from ..governance import auditguards, audittree, checkpoints, witnesses

    settings = ctx.obj.settings
    db = open_db(settings)
    acting(ctx, db, "audit.read")
    with db.session() as session:
        size, last = audittree.size(session), checkpoints.latest(session)
        states, unguarded = witnesses.states(session, settings), auditguards.missing(session)
    out.print(f"Merkle tree: {size} entries")
    out.print(f"latest checkpoint: {last.size} entries at {last.created_at.isoformat()}" if last
              else "latest checkpoint: none yet")
    if not states:
        out.print("witnesses: none configured (FACETRAIL_AUDIT_WITNESSES): checkpoints are kept only here")
    for state in states:
        held = "nothing yet" if state.last_delivered is None else f"checkpoint of {state.last_delivered} entries"
        line = f"witness {literal(state.witness)}: holds {held}, {state.pending} pending"
        out.print(line + (f", last error: {literal(state.last_error)}" if state.last_error else ""), soft_wrap=True)
    out.print("append-only triggers: " + ("all in place" if not unguarded else "MISSING " + ", ".join(unguarded)),
              soft_wrap=True)
    if unguarded or any(s.pending for s in states):
        raise typer.Exit(1)


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
