"""The `facetrail` command line."""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .config import Settings, get_settings

app = typer.Typer(help="facetrail: an accountable, self-hosted face search engine.", no_args_is_help=True)
audit_app = typer.Typer(help="Inspect the tamper-evident audit log.", no_args_is_help=True)
user_app = typer.Typer(help="Manage user accounts (admin).", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens (admin).", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")

out = Console()
err = Console(stderr=True)


@dataclass
class Context:
    settings: Settings
    as_user: str | None
    token: str | None


@app.callback()
def main(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", envvar="FACETRAIL_DATA_DIR", help="Data folder (default: ./facetrail-data)."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", envvar="FACETRAIL_DATABASE_URL", help="SQLAlchemy URL (default: SQLite in the data folder)."),
    ] = None,
    as_user: Annotated[
        str | None,
        typer.Option("--as", envvar="FACETRAIL_USER", help="Act as this account (you have local access)."),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="FACETRAIL_TOKEN", help="Act with this API token.")
    ] = None,
) -> None:
    try:
        settings = get_settings(data_dir=data_dir, database_url=database_url)
    except ValueError as exc:  # also pydantic's ValidationError: a bad setting in the environment or file
        err.print(f"[red]error:[/] bad configuration: {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    ctx.obj = Context(settings, as_user, token)


def _actor(ctx: typer.Context, db, permission: str):
    """Who runs this command, from FACETRAIL_TOKEN or --as; refuses without the permission."""
    from .governance.accounts import AccountError, Actor, get_user, user_for_token

    context: Context = ctx.obj
    with db.session() as session, session.begin():
        if context.token:
            user = user_for_token(session, context.token)
            if user is None:
                _refuse("the token is not valid (unknown, expired or revoked)")
        elif context.as_user:
            try:
                user = get_user(session, context.as_user)
            except AccountError as exc:
                _refuse(str(exc))
            if user.disabled:
                _refuse(f"the account {user.username!r} is disabled")
        else:
            _refuse("who is acting? Give --as USERNAME (or FACETRAIL_USER) or FACETRAIL_TOKEN")
        actor = Actor.of(user, "cli", getpass.getuser())
    if not actor.can(permission):
        _refuse(f"the {actor.role} role may not do this ({permission})")
    return actor


def _refuse(message: str) -> NoReturn:
    err.print(f"[red]refused:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


def _open(settings: Settings):
    """The database, migrated; a change of settings since the last command is recorded first."""
    from .governance.settings_log import record_if_changed
    from .store import Database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    with db.session() as session, session.begin():
        record_if_changed(session, settings)
    return db


def _with_workers(settings: Settings, workers: int | None) -> Settings:
    """The settings with --workers applied."""
    return settings.model_copy(update={"workers": workers}) if workers else settings


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _operator(ctx: typer.Context, db):
    """Who declares sources and ingests: --as / FACETRAIL_TOKEN (an admin) if given, else the local
    operating-system account (access to the data folder is an operator's access); both audited."""
    from .governance.accounts import Actor

    context: Context = ctx.obj
    if context.token or context.as_user:
        return _actor(ctx, db, "sources.manage")
    os_user = getpass.getuser()
    return Actor(f"local:{os_user}", "admin", "cli", None, os_user)


def _ingest(settings: Settings, db, source, stream, total: int | None, verbose: bool, pool=None):
    """Run an ingest of `source` over `stream` with a progress bar; print and return the summary.
    `pool`: analysis processes started earlier (their models load meanwhile)."""
    from .index import open_index
    from .ingest import Ingestor

    index = open_index(settings, db)
    ingestor = Ingestor(settings, db, index, source, pool=pool)
    interrupted = False
    with _progress() as progress:
        task = progress.add_task(f"indexing {source.name}", total=total)
        try:
            ingestor.run(stream, lambda: progress.advance(task))
        except KeyboardInterrupt:
            interrupted = True
    _mark_run(db, source)
    summary = ingestor.summary
    if verbose or len(summary.errors) <= 20:
        for location, reason, message in summary.errors:
            err.print(f"[yellow]skipped[/] {escape(f'{location}: {reason} ({message})')}", soft_wrap=True)
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(summary.skipped.items())) or "none"
    pages = f"{summary.pages} pages, " if summary.pages else ""
    out.print(
        f"{'Interrupted' if interrupted else 'Done'}: {pages}{summary.files} files, {summary.images} new images, "
        f"{summary.faces} faces, {summary.duplicates} duplicates, {summary.unchanged} unchanged, "
        f"skipped: {skipped}; {summary.seconds:.1f} s, {summary.images_per_second:.1f} images/s",
        soft_wrap=True,
    )
    if summary.opted_out:
        out.print(f"{summary.opted_out} faces matching an opt-out were left out.")
    out.print(f"Index: {len(index)} faces.")
    if interrupted:
        out.print("Run the same command again to finish; nothing will be duplicated.")
        raise typer.Exit(130)
    return summary


def _mark_run(db, source) -> None:
    from .store import Source

    with db.session() as session, session.begin():
        session.get(Source, source.id).last_run_at = datetime.now(UTC)


@app.command("index")
def index_command(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (walked recursively).")],
    legal_basis: Annotated[
        str | None, typer.Option(help="Declare a folder source for PATHS with this legal basis if none holds them.")
    ] = None,
    source_name: Annotated[str | None, typer.Option("--source", help="Name of the source declared.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every skipped file.")] = False,
    queue: Annotated[
        bool, typer.Option("--queue", help="Only queue the files, for `facetrail worker` processes.")
    ] = False,
) -> None:
    """Find, embed and index every face in image files under PATHS (a folder source)."""
    settings = _with_workers(ctx.obj.settings, workers)
    for path in paths:
        if not path.exists():
            err.print(f"[red]error:[/] no such file or folder: {path}")
            raise typer.Exit(2)
    from .ingest.pool import start_pool

    pool = None if queue else start_pool(settings)  # the analysis processes start while the rest loads
    try:
        from .ingest import walk
        from .ingest.sources import SourceError, folder_source

        db = _open(settings)
        try:
            with db.session() as session, session.begin():
                source = folder_source(session, _operator(ctx, db), paths, legal_basis, source_name)
        except SourceError as exc:
            _refuse(str(exc))
        entries = list(walk(paths))
        if pool is not None:
            _ingest(settings, db, source, entries, len(entries), verbose, pool)
            return
        from .ingest.queue import enqueue

        with db.session() as session, session.begin():
            queued = enqueue(session, source, [e.location for e in entries])
        out.print(f"Queued {queued} of {len(entries)} files of source {source.name!r} for `facetrail worker`.")
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


@app.command()
def search(
    ctx: typer.Context,
    photos: Annotated[list[Path], typer.Argument(help="Query photo(s); each is searched separately.")],
    purpose: Annotated[str, typer.Option(help="Purpose category (see FACETRAIL_PURPOSES); recorded.")] = "",
    justification: Annotated[str, typer.Option(help="Why this search is needed; recorded.")] = "",
    case: Annotated[str, typer.Option("--case", help="Case reference; recorded.")] = "",
    face: Annotated[int | None, typer.Option(help="Which face in the photo (index; default the largest).")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, max=1000, help="Number of results.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Largest distance reported [default 0.6].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per photo (JSON Lines).")] = False,
    urgent: Annotated[bool, typer.Option(help="Urgent: results at once, approval due within 48 h.")] = False,
    mode: Annotated[
        str, typer.Option(help="faces: where the person appears; copies: copies of this very photo.")
    ] = "faces",
) -> None:
    """Find where the person in PHOTO appears (or, with --mode copies, copies of the photo itself).
    Every search is written to the audit log."""
    from .faces import load_engine
    from .index import open_index
    from .search import RateLimited, SearchRefused, Searcher, check_request

    settings: Settings = ctx.obj.settings
    if mode not in ("faces", "copies"):
        err.print("[red]error:[/] --mode is faces or copies")
        raise typer.Exit(2)
    for photo in photos:
        if not photo.is_file():
            err.print(f"[red]error:[/] no such file: {photo}")
            raise typer.Exit(2)
    db = _open(settings)
    actor = _actor(ctx, db, "search")
    try:
        check_request(settings, actor, purpose, justification, case, urgent)  # before loading the model
    except SearchRefused as exc:
        _refuse(str(exc))
    searcher = Searcher(settings, db, open_index(settings, db), load_engine(settings))
    failures = 0
    for photo in photos:
        try:
            if mode == "copies":
                result = searcher.copies(photo.read_bytes(), actor=actor, purpose=purpose,
                                         justification=justification, case_ref=case, top_k=top_k, name=str(photo))
            else:
                result = searcher.search(
                    photo.read_bytes(),
                    actor=actor,
                    purpose=purpose,
                    justification=justification,
                    case_ref=case,
                    face=face,
                    top_k=top_k,
                    threshold=threshold,
                    name=str(photo),
                    urgent=urgent,
                )
        except SearchRefused as exc:
            _refuse(str(exc))
        except RateLimited as exc:
            _refuse(f"{exc} (in {exc.retry_after / 60:.0f} min)")
        failures += bool(result.error)
        if as_json:
            sys.stdout.write(json.dumps(result.to_dict()) + "\n")
            sys.stdout.flush()
        else:
            _print_result(photo, result)
    if failures == len(photos):
        raise typer.Exit(1)


def _print_copies(photo: Path, result) -> None:
    out.print(f"[bold]{photo}[/]: copies of this photo")
    if result.error:
        out.print(f"[red]error:[/] {result.error}")
        return
    if not result.copies:
        out.print("No copy found.")
        return
    table = Table("#", "image", "bits apart", "first seen", "last seen")
    table.add_column("where", overflow="fold")
    for rank, copy in enumerate(result.copies, 1):
        image = copy["image"]
        where = [a["page_url"] or a["location"] for a in image["appearances"]]
        table.add_row(str(rank), str(image["id"]), str(copy["distance"]), image["first_seen"][:10],
                      image["last_seen"][:10], "\n".join(where[:5]) + (f"\n(+{len(where) - 5})" if len(where) > 5 else ""))
    out.print(table)
    out.print(f"(search {result.audit_id})")


def _print_result(photo: Path, result) -> None:
    if result.mode == "copies":
        _print_copies(photo, result)
        return
    faces = result.query["faces"]
    out.print(f"[bold]{photo}[/]: {len(faces)} face(s) found")
    for f in faces:
        mark = "*" if f["index"] == result.query["selected"] else " "
        out.print(f" {mark} face {f['index']}: box {tuple(f['box'])}, {f['size']} px")
    if result.error:
        out.print(f"[red]error:[/] {result.error}")
        return
    if result.approval and result.approval["policy"] == "prior" and result.approval["state"] == "pending":
        out.print(f"Results withheld until a supervisor approves (approval {result.approval['id']}, "
                  f"search {result.audit_id}).")
        return
    if not result.results:
        out.print("No match within the threshold.")
        return
    table = Table("#", "face", "distance", "similarity", "checked")
    table.add_column("where (page or file)", overflow="fold")
    for rank, m in enumerate(result.results, 1):
        places = [(a["page_url"] or a["location"]) + (" (gone)" if a["gone"] else "") for a in m.image["appearances"]]
        more = f"\n(+{len(places) - 3} more)" if len(places) > 3 else ""
        table.add_row(
            str(rank), str(m.face_id), f"{m.distance:.3f}", f"{m.similarity:.2f}", m.verification.get("state", ""),
            "\n".join(places[:3]) + more,
        )
    out.print(table)
    out.print(f"(search {result.audit_id}; confirm a match with `facetrail confirm {result.audit_id} FACE`)")


@app.command()
def results(
    ctx: typer.Context,
    search_id: int,
    as_json: Annotated[bool, typer.Option("--json", help="The result object as JSON.")] = False,
) -> None:
    """Show an earlier search's results (yours, or any as a supervisor) once they may be seen."""
    from .faces import load_engine
    from .index import open_index
    from .search import SearchRefused, Searcher

    settings = ctx.obj.settings
    db = _open(settings)
    actor = _actor(ctx, db, "search")
    searcher = Searcher(settings, db, open_index(settings, db), load_engine(settings))
    try:
        result = searcher.results_of(actor, search_id)
    except SearchRefused as exc:
        _refuse(str(exc))
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        return
    result.query.setdefault("faces", [])
    _print_result(Path(f"search {search_id}"), result)


@app.command("approvals")
def approvals_command(ctx: typer.Context) -> None:
    """List searches waiting for a supervisor's decision (supervisors)."""
    from .governance import approvals

    db = _open(ctx.obj.settings)
    _actor(ctx, db, "approve")
    table = Table("id", "search", "policy", "requester", "purpose", "case", "justification", "due")
    with db.session() as session:
        for approval, entry in approvals.pending(session):
            item = approvals.describe(approval)
            due = "OVERDUE" if item["overdue"] else (item["due_at"] or "")[:16]
            table.add_row(str(approval.id), str(approval.search_id), approval.policy, approval.requester,
                          entry.purpose or "", entry.details.get("case_ref", ""), entry.details.get("justification", ""),
                          due)
    out.print(table)


def _decide(ctx: typer.Context, approval_id: int, approve: bool, reason: str) -> None:
    from .faces import load_engine
    from .governance.approvals import ApprovalError
    from .index import open_index
    from .search import Searcher

    settings = ctx.obj.settings
    db = _open(settings)
    actor = _actor(ctx, db, "approve")
    searcher = Searcher(settings, db, open_index(settings, db), load_engine(settings))
    try:
        result = searcher.decide(actor, approval_id, approve, reason)
    except ApprovalError as exc:
        _refuse(str(exc))
    out.print(f"Search {result['search_id']} {result['state']} by {actor.username}.")


@app.command()
def approve(
    ctx: typer.Context,
    approval_id: int,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
) -> None:
    """Approve a search (supervisors; never your own)."""
    _decide(ctx, approval_id, True, reason)


@app.command()
def deny(
    ctx: typer.Context,
    approval_id: int,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
) -> None:
    """Deny a search (supervisors; never your own); a prior search's held descriptor is deleted."""
    _decide(ctx, approval_id, False, reason)


@app.command("confirm")
def confirm_command(
    ctx: typer.Context,
    search_id: Annotated[int, typer.Argument(help="The search's audit id (printed with its results).")],
    face_id: Annotated[int, typer.Argument(help="The result's face id.")],
) -> None:
    """Confirm that a search result shows the person searched for; a second person verifies it."""
    from .governance.verification import VerificationError, confirm

    db = _open(ctx.obj.settings)
    actor = _actor(ctx, db, "search")
    try:
        with db.session() as session, session.begin():
            result = confirm(session, actor, search_id, face_id)
    except VerificationError as exc:
        _refuse(str(exc))
    out.print(f"Face {face_id} in case {result['case_ref']}: {result['state']} "
              f"(by {', '.join(result['confirmed_by'])})")


@app.command()
def reindex(ctx: typer.Context) -> None:
    """Rebuild the vector index from the database."""
    from .index import rebuild
    from .store import Face
    from sqlalchemy import func, select

    settings: Settings = ctx.obj.settings
    db = _open(settings)
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(Face)) or 0
    try:
        with _progress() as progress:
            task = progress.add_task("reindexing", total=total)
            index = rebuild(settings, db, lambda n: progress.advance(task, n))
    except RuntimeError as exc:  # e.g. another process (the web app) owns the index
        _refuse(f"{exc}; stop it first")
    out.print(f"Index rebuilt: {len(index)} faces ({index.kind}).")


@app.command()
def stats(ctx: typer.Context) -> None:
    """Counts of images, faces and locations."""
    from sqlalchemy import func, select

    from .governance.optout import counts as optout_counts
    from .index import open_index
    from .store import Face, Image, Location

    settings: Settings = ctx.obj.settings
    db = _open(settings)
    index = open_index(settings, db)
    with db.session() as session:
        count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
        out.print(f"images: {count(Image)}\nfaces: {count(Face)}\nlocations: {count(Location)}")
        removed = optout_counts(session)
        out.print(f"opt-outs: {removed['opt_outs']} ({removed['faces_removed']} faces removed)")
    out.print(f"index: {index.kind}, {len(index)} vectors\ndata folder: {settings.data_dir.resolve()}")


@app.command()
def check(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option("--repair", help="Fix what can be fixed (the database is the truth).")] = False,
) -> None:
    """Check that the database, the vector index and the media folder agree."""
    from .index.check import check as run_check

    db = _open(ctx.obj.settings)
    report = run_check(ctx.obj.settings, db, repair=repair)
    out.print(
        f"faces in database: {report.faces}, in index: {report.index_size}\n"
        f"missing from index: {report.missing_from_index}, stale in index: {report.stale_in_index}\n"
        f"images found nowhere: {report.orphan_images}, media files of no image: {report.orphan_media}, "
        f"images without a thumbnail: {report.missing_media}",
        soft_wrap=True,
    )
    if report.ok:
        out.print("OK: consistent")
    elif report.repaired:
        out.print("REPAIRED: run `facetrail check` again to confirm")
    else:
        out.print("INCONSISTENT: run `facetrail check --repair` to fix")
        raise typer.Exit(1)


@app.command("subject-report")
def subject_report(
    ctx: typer.Context,
    photo: Annotated[Path, typer.Argument(help="A photo of the data subject's face.")],
    request_ref: Annotated[str, typer.Option("--request-ref", help="Reference of the verified request.")] = "",
    output: Annotated[Path | None, typer.Option("--out", help="Write the report here (default: print).")] = None,
) -> None:
    """Report what the index holds for a person's face (admins; for a verified subject access request)."""
    from .faces import load_engine
    from .index import open_index
    from .search import SearchRefused, Searcher

    settings = ctx.obj.settings
    if not photo.is_file():
        _refuse(f"no such file: {photo}")
    db = _open(settings)
    actor = _actor(ctx, db, "subject.report")
    searcher = Searcher(settings, db, open_index(settings, db), load_engine(settings))
    try:
        report = searcher.subject_report(actor, photo.read_bytes(), request_ref)
    except SearchRefused as exc:
        _refuse(str(exc))
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if output:
        output.write_text(text + "\n")
        out.print(f"{len(report['images'])} images written to {output} (recorded as audit entry {report['audit_id']}).")
    else:
        sys.stdout.write(text + "\n")


@app.command()
def report(
    ctx: typer.Context,
    start: Annotated[datetime, typer.Option("--from", help="First day (UTC), e.g. 2026-01-01.", formats=["%Y-%m-%d"])],
    end: Annotated[datetime, typer.Option("--to", help="Last day (UTC), included.", formats=["%Y-%m-%d"])],
    output: Annotated[Path, typer.Option("--out", help="Folder to write report.html, the charts and report.json.")],
) -> None:
    """Write the transparency report for a period (auditors, supervisors, admins; recorded)."""
    from .governance import audit
    from .governance import report as transparency

    settings = ctx.obj.settings
    db = _open(settings)
    actor = _actor(ctx, db, "audit.read")
    with db.session() as session, session.begin():
        data = transparency.collect(session, start.date(), end.date(), settings.match_threshold)
        audit.record(session, actor, "report", **{"from": data["from"], "to": data["to"]})
    output.mkdir(parents=True, exist_ok=True)
    for name, png in transparency.charts(data).items():
        (output / f"{name}.png").write_bytes(png)
    images = {name: f"{name}.png" for name in ("searches_per_month", "searches_per_role", "searches_per_purpose")}
    (output / "report.html").write_text(transparency.render(data, images))
    (output / "report.json").write_text(json.dumps(data, indent=2))
    out.print(f"Report for {data['from']} to {data['to']} written to {output / 'report.html'}")


@app.command()
def maintenance(ctx: typer.Context) -> None:
    """Delete what has outlived its retention window (query descriptors, expired sessions).
    Run it daily (cron or a systemd timer); the server also runs it when it starts."""
    from .governance.retention import maintenance as run_maintenance

    settings = ctx.obj.settings
    db = _open(settings)
    with db.session() as session, session.begin():
        counts = run_maintenance(session, settings)
    out.print(
        f"Deleted {counts['query_embeddings_deleted']} query descriptors older than {settings.repeat_subject_days} days "
        f"and {counts['sessions_deleted']} expired sessions.",
        soft_wrap=True,
    )


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Start the web app and JSON API."""
    import uvicorn

    from .web import create_app

    settings: Settings = ctx.obj.settings
    err.print(f"facetrail: serving {settings.data_dir.resolve()} on http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@audit_app.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Check the audit log's hash chain; prints OK or the first broken entry."""
    from .governance import audit

    db = _open(ctx.obj.settings)
    _actor(ctx, db, "audit.read")
    with db.session() as session:
        count, problem = audit.verify(session)
    if problem:
        out.print(f"BROKEN at entry {problem.entry_id}: {problem.reason} ({count} entries before it are intact)")
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
    from .governance import audit

    db = _open(ctx.obj.settings)
    actor = _actor(ctx, db, "audit.read")
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    with db.session() as session, session.begin():  # the export itself is recorded, and included
        audit.record(session, actor, "audit.export", since=since.isoformat() if since else None)
    handle = output.open("w") if output else sys.stdout
    count = 0
    with db.session() as session:
        for line in audit.export(session, since):
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
            count += 1
    if output:
        handle.close()
        err.print(f"{count} entries written to {output}")


@app.command()
def init(ctx: typer.Context, username: Annotated[str, typer.Argument(help="The first admin's name.")] = "admin") -> None:
    """Create the first admin account and print its one-time password."""
    from sqlalchemy import func, select

    from .governance.accounts import create_user
    from .store import User

    db = _open(ctx.obj.settings)
    with db.session() as session, session.begin():
        if session.scalar(select(func.count()).select_from(User)):
            _refuse("accounts exist already; an admin adds users with `facetrail user add`")
        _, password = create_user(session, None, username, "admin")
    out.print(f"Admin {username!r} created. One-time password (change it at first login): {password}")


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    username: str,
    role: Annotated[str, typer.Option(help="admin, supervisor, investigator or auditor.")],
) -> None:
    """Add an account; prints its one-time password."""
    from .governance.accounts import AccountError, create_user

    db = _open(ctx.obj.settings)
    actor = _actor(ctx, db, "users.manage")
    try:
        with db.session() as session, session.begin():
            _, password = create_user(session, actor, username, role)
    except AccountError as exc:
        _refuse(str(exc))
    out.print(f"User {username!r} ({role}) created. One-time password: {password}")


@user_app.command("list")
def user_list(ctx: typer.Context) -> None:
    """List accounts."""
    from sqlalchemy import select

    from .store import User

    db = _open(ctx.obj.settings)
    _actor(ctx, db, "users.manage")
    table = Table("username", "role", "status", "created")
    with db.session() as session:
        for user in session.scalars(select(User).order_by(User.username)):
            status = "disabled" if user.disabled else ("locked" if user.locked_until else "active")
            table.add_row(user.username, user.role, status, user.created_at.strftime("%Y-%m-%d"))
    out.print(table)


def _user_change(ctx: typer.Context, change, *args) -> None:
    from .governance.accounts import AccountError

    db = _open(ctx.obj.settings)
    actor = _actor(ctx, db, "users.manage")
    try:
        with db.session() as session, session.begin():
            result = change(session, actor, *args)
    except AccountError as exc:
        _refuse(str(exc))
    return result


@user_app.command("disable")
def user_disable(ctx: typer.Context, username: str) -> None:
    """Disable an account (it can no longer sign in or use its tokens)."""
    from .governance.accounts import set_disabled

    _user_change(ctx, set_disabled, username, True)
    out.print(f"User {username!r} disabled.")


@user_app.command("enable")
def user_enable(ctx: typer.Context, username: str) -> None:
    """Enable a disabled account."""
    from .governance.accounts import set_disabled

    _user_change(ctx, set_disabled, username, False)
    out.print(f"User {username!r} enabled.")


@user_app.command("set-role")
def user_set_role(ctx: typer.Context, username: str, role: str) -> None:
    """Change an account's role."""
    from .governance.accounts import set_role

    _user_change(ctx, set_role, username, role)
    out.print(f"User {username!r} is now {role}.")


@user_app.command("reset-password")
def user_reset_password(ctx: typer.Context, username: str) -> None:
    """Give an account a new one-time password."""
    from .governance.accounts import reset_password

    password = _user_change(ctx, reset_password, username)
    out.print(f"New one-time password for {username!r}: {password}")


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="The account the token acts for.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    days: Annotated[int, typer.Option(help="Days until it expires (0: never).")] = 90,
) -> None:
    """Create an API token; it is shown once."""
    from .governance.accounts import create_token

    token, secret = _user_change(ctx, create_token, user, name, days or None)
    out.print(f"Token {token.id} for {user!r}: {secret}\nIt is shown only now; keep it secret.", soft_wrap=True)


@token_app.command("list")
def token_list(ctx: typer.Context) -> None:
    """List API tokens (never their secrets)."""
    from sqlalchemy import select

    from .store import ApiToken

    db = _open(ctx.obj.settings)
    _actor(ctx, db, "users.manage")
    table = Table("id", "user", "name", "created", "expires", "status")
    with db.session() as session:
        for token in session.scalars(select(ApiToken).order_by(ApiToken.id)):
            table.add_row(
                str(token.id), token.user.username, token.name, token.created_at.strftime("%Y-%m-%d"),
                token.expires_at.strftime("%Y-%m-%d") if token.expires_at else "never",
                "revoked" if token.revoked_at else "active",
            )
    out.print(table)


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, token_id: int) -> None:
    """Revoke an API token at once."""
    from .governance.accounts import revoke_token

    _user_change(ctx, revoke_token, token_id)
    out.print(f"Token {token_id} revoked.")


from . import cli_index, cli_sources  # noqa: E402,F401 - register index-status, source, crawl, ingest, worker
