"""The `facetrail` command line."""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .config import Settings, get_settings

app = typer.Typer(help="facetrail: an accountable, self-hosted face search engine.", no_args_is_help=True)
audit_app = typer.Typer(help="Inspect the tamper-evident audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

out = Console()
err = Console(stderr=True)


@app.callback()
def main(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", envvar="FACETRAIL_DATA_DIR", help="Data folder [default: ./facetrail-data]."),
    ] = None,
) -> None:
    ctx.obj = get_settings(data_dir=data_dir)


def _open(settings: Settings):
    from .store import Database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Database(settings.db_url)


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


@app.command("index")
def index_command(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (walked recursively).")],
    workers: Annotated[int | None, typer.Option(help="Processes [default: one per core].")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every skipped file.")] = False,
) -> None:
    """Find, embed and index every face in image files under PATHS."""
    from .index import open_index
    from .ingest import Ingestor, walk

    settings: Settings = ctx.obj
    if workers:
        settings = settings.model_copy(update={"workers": workers})
    for path in paths:
        if not path.exists():
            err.print(f"[red]error:[/] no such file or folder: {path}")
            raise typer.Exit(2)
    db = _open(settings)
    index = open_index(settings, db)
    entries = list(walk(paths))
    ingestor = Ingestor(settings, db, index)
    interrupted = False
    with _progress() as progress:
        task = progress.add_task("indexing", total=len(entries))
        try:
            ingestor.run(entries, lambda: progress.advance(task))
        except KeyboardInterrupt:
            interrupted = True
    summary = ingestor.summary
    if verbose or len(summary.errors) <= 20:
        for location, reason, message in summary.errors:
            err.print(f"[yellow]skipped[/] {location}: {reason} ({message})", soft_wrap=True)
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(summary.skipped.items())) or "none"
    out.print(
        f"{'Interrupted' if interrupted else 'Done'}: {summary.files} files, {summary.images} new images, "
        f"{summary.faces} faces, {summary.duplicates} duplicates, {summary.unchanged} unchanged, "
        f"skipped: {skipped}; {summary.seconds:.1f} s, {summary.images_per_second:.1f} images/s",
        soft_wrap=True,
    )
    out.print(f"Index: {len(index)} faces.")
    if interrupted:
        out.print("Run the same command again to finish; nothing will be duplicated.")
        raise typer.Exit(130)


@app.command()
def search(
    ctx: typer.Context,
    photos: Annotated[list[Path], typer.Argument(help="Query photo(s); each is searched separately.")],
    purpose: Annotated[str, typer.Option(help="Why you are searching (required; recorded in the audit log).")] = "",
    face: Annotated[int | None, typer.Option(help="Which face in the photo (index; default the largest).")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, max=1000, help="Number of results.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Largest distance reported [default 0.6].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per photo (JSON Lines).")] = False,
) -> None:
    """Find where the person in PHOTO appears. Every search is written to the audit log."""
    from .faces import load_engine
    from .index import open_index
    from .search import SearchRefused, Searcher

    settings: Settings = ctx.obj
    if not purpose.strip():
        err.print("[red]refused:[/] a search needs a purpose: say why you are searching with --purpose TEXT")
        raise typer.Exit(2)
    for photo in photos:
        if not photo.is_file():
            err.print(f"[red]error:[/] no such file: {photo}")
            raise typer.Exit(2)
    db = _open(settings)
    searcher = Searcher(settings, db, open_index(settings, db), load_engine(settings))
    failures = 0
    for photo in photos:
        try:
            result = searcher.search(
                photo.read_bytes(),
                actor=getpass.getuser(),
                actor_kind="os_user",
                purpose=purpose,
                face=face,
                top_k=top_k,
                threshold=threshold,
                name=str(photo),
            )
        except SearchRefused as exc:
            err.print(f"[red]refused:[/] {exc}")
            raise typer.Exit(2) from None
        failures += bool(result.error)
        if as_json:
            sys.stdout.write(json.dumps(result.to_dict()) + "\n")
            sys.stdout.flush()
        else:
            _print_result(photo, result)
    if failures == len(photos):
        raise typer.Exit(1)


def _print_result(photo: Path, result) -> None:
    faces = result.query["faces"]
    out.print(f"[bold]{photo}[/]: {len(faces)} face(s) found")
    for f in faces:
        mark = "*" if f["index"] == result.query["selected"] else " "
        out.print(f" {mark} face {f['index']}: box {tuple(f['box'])}, {f['size']} px")
    if result.error:
        out.print(f"[red]error:[/] {result.error}")
        return
    if not result.results:
        out.print("No match within the threshold.")
        return
    table = Table("#", "distance", "similarity", "sha256")
    table.add_column("location", overflow="fold")
    for rank, m in enumerate(result.results, 1):
        table.add_row(
            str(rank), f"{m.distance:.3f}", f"{m.similarity:.2f}", m.image["sha256"][:12], m.image["location"] or ""
        )
    out.print(table)
    out.print(f"(audit entry {result.audit_id})")


@app.command()
def reindex(ctx: typer.Context) -> None:
    """Rebuild the vector index from the database."""
    from .index import rebuild
    from .store import Face
    from sqlalchemy import func, select

    settings: Settings = ctx.obj
    db = _open(settings)
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(Face)) or 0
    with _progress() as progress:
        task = progress.add_task("reindexing", total=total)
        index = rebuild(settings, db, lambda n: progress.advance(task, n))
    out.print(f"Index rebuilt: {len(index)} faces ({index.kind}).")


@app.command()
def stats(ctx: typer.Context) -> None:
    """Counts of images, faces and locations."""
    from sqlalchemy import func, select

    from .index import open_index
    from .store import Face, Image, Location

    settings: Settings = ctx.obj
    db = _open(settings)
    index = open_index(settings, db)
    with db.session() as session:
        count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
        out.print(f"images: {count(Image)}\nfaces: {count(Face)}\nlocations: {count(Location)}")
    out.print(f"index: {index.kind}, {len(index)} vectors\ndata folder: {settings.data_dir.resolve()}")


@app.command()
def check(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option("--repair", help="Fix what can be fixed (the database is the truth).")] = False,
) -> None:
    """Check that the database, the vector index and the media folder agree."""
    from .check import check as run_check

    db = _open(ctx.obj)
    report = run_check(ctx.obj, db, repair=repair)
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


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Start the web app and JSON API."""
    import uvicorn

    from .web import create_app

    settings: Settings = ctx.obj
    err.print(f"facetrail: serving {settings.data_dir.resolve()} on http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@audit_app.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Check the audit log's hash chain; prints OK or the first broken entry."""
    from .governance import audit

    db = _open(ctx.obj)
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
    output: Annotated[Path | None, typer.Option("--out", help="File to write [default: standard output].")] = None,
) -> None:
    """Write audit entries as JSON Lines, with their hashes, so the chain's head can be kept elsewhere."""
    from .governance import audit

    db = _open(ctx.obj)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    handle = output.open("w") if output else sys.stdout
    count = 0
    with db.session() as session:
        for record in audit.export(session, since):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    if output:
        handle.close()
        err.print(f"{count} entries written to {output}")


if __name__ == "__main__":
    app()
