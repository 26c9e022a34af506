"""`facetrail source ...`, `facetrail crawl` and `facetrail ingest urls|warc`: declared sources only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .cli import _ingest, _open, _operator, _refuse, _with_workers, app, err, out

source_app = typer.Typer(help="Declare and manage sources: nothing outside a declared source is indexed.",
                         no_args_is_help=True)
ingest_app = typer.Typer(help="Ingest image URL lists and web archives into a source.", no_args_is_help=True)
app.add_typer(source_app, name="source")
app.add_typer(ingest_app, name="ingest")


@source_app.command("add")
def source_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Short name: lower-case letters, digits, '.', '_', '-'.")],
    kind: Annotated[str, typer.Option(help="site, folder, urls or warc.")] = "site",
    legal_basis: Annotated[str, typer.Option(help="Why these images may be indexed (required; recorded).")] = "",
    url: Annotated[list[str] | None, typer.Option(help="Start URL of a site (repeatable).")] = None,
    host: Annotated[
        list[str] | None,
        typer.Option(help="Allowed host or host:port (repeatable) (default: the start URLs' hosts)."),
    ] = None,
    prefix: Annotated[list[str] | None, typer.Option(help="Allowed URL prefix (repeatable).")] = None,
    path: Annotated[list[Path] | None, typer.Option(help="Folder of a folder source (repeatable).")] = None,
    max_pages: Annotated[int | None, typer.Option(min=1, help="Page limit of each crawl.")] = None,
    max_depth: Annotated[int | None, typer.Option(min=0, help="Link depth of each crawl.")] = None,
) -> None:
    """Declare a source with its scope and legal basis (audited)."""
    from .ingest.sources import SourceError, SourceSpec, add_source

    db = _open(ctx.obj.settings)
    options = {k: v for k, v in {"max_pages": max_pages, "max_depth": max_depth}.items() if v is not None}
    spec = SourceSpec(name, kind, legal_basis, start_urls=tuple(url or ()), hosts=tuple(host or ()),
                      prefixes=tuple(prefix or ()), paths=tuple(map(str, path or ())), options=options)
    try:
        with db.session() as session, session.begin():
            source = add_source(session, _operator(ctx, db), spec)
    except SourceError as exc:
        _refuse(str(exc))
    out.print(f"Source {source.name!r} ({source.kind}) declared; scope: {json.dumps(source.scope)}", soft_wrap=True,
              markup=False)


@source_app.command("list")
def source_list(ctx: typer.Context) -> None:
    """Sources with their kind, status, scope and what they hold."""
    from .ingest.sources import counts, list_sources

    db = _open(ctx.obj.settings)
    table = Table("name", "kind", "status", "images", "faces", "last run", "legal basis")
    table.add_column("scope", overflow="fold")
    with db.session() as session:
        for source in list_sources(session):
            n = counts(session, source)
            scope = source.scope.get("paths") or source.scope.get("hosts") or ["any public host"]
            table.add_row(source.name, source.kind, source.status, str(n["images"]), str(n["faces"]),
                          source.last_run_at.isoformat(timespec="seconds") if source.last_run_at else "never",
                          source.legal_basis, ", ".join(scope))
    out.print(table)


@source_app.command("show")
def source_show(
    ctx: typer.Context,
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="As one JSON object.")] = False,
) -> None:
    """Everything about one source: scope, legal basis, owner, runs and counts."""
    from .ingest.sources import SourceError, as_dict, counts, get_source

    db = _open(ctx.obj.settings)
    with db.session() as session:
        try:
            source = get_source(session, name)
        except SourceError as exc:
            _refuse(str(exc))
        data = {**as_dict(source), "counts": counts(session, source)}
    if as_json:
        out.print_json(json.dumps(data))
        return
    for key, value in data.items():
        out.print(f"[bold]{key}[/]: {json.dumps(value) if isinstance(value, dict | list) else value}",
                  soft_wrap=True)


def _set_status(ctx: typer.Context, name: str, status: str) -> None:
    from .ingest.sources import SourceError, set_status

    db = _open(ctx.obj.settings)
    try:
        with db.session() as session, session.begin():
            set_status(session, _operator(ctx, db), name, status)
    except SourceError as exc:
        _refuse(str(exc))
    out.print(f"Source {name!r} is {status}.")


@source_app.command("suspend")
def source_suspend(ctx: typer.Context, name: str) -> None:
    """Stop crawling and ingesting a source (what it holds stays searchable)."""
    _set_status(ctx, name, "suspended")


@source_app.command("resume")
def source_resume(ctx: typer.Context, name: str) -> None:
    """Allow a suspended source to be crawled and ingested again."""
    _set_status(ctx, name, "active")


@source_app.command("remove")
def source_remove(
    ctx: typer.Context,
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a source: its appearances go, and faces seen in no other source leave the index."""
    from .index import open_index
    from .ingest.sources import SourceError, remove_source
    from .store.cleanup import drop
    from .store.media import MediaStore

    settings = ctx.obj.settings
    db = _open(settings)
    if not yes and not typer.confirm(f"Remove source {name!r} and everything found only through it?"):
        raise typer.Exit(1)
    index = open_index(settings, db)
    try:
        with db.session() as session, session.begin():
            orphans = remove_source(session, _operator(ctx, db), name)
    except SourceError as exc:
        _refuse(str(exc))
    faces = drop(orphans, index, MediaStore(settings.media_dir))
    index.save()
    out.print(f"Source {name!r} removed: {len(orphans)} images and {faces} faces left the index.")


def _source(ctx: typer.Context, db, name: str, kind: str, legal_basis: str | None):
    """An active source of `kind`; declared on the spot (with `legal_basis`) if it does not exist."""
    from .ingest.sources import SourceError, SourceSpec, add_source, get_source, usable

    try:
        with db.session() as session, session.begin():
            try:
                source = get_source(session, name)
            except SourceError:
                if not legal_basis:
                    raise SourceError(f"no source named {name!r}: declare it with `facetrail source add {name} "
                                      f"--kind {kind} --legal-basis TEXT`, or give --legal-basis") from None
                source = add_source(session, _operator(ctx, db), SourceSpec(name, kind, legal_basis))
            usable(source, kind)
    except SourceError as exc:
        _refuse(str(exc))
    return source


def _require_files(files: list[Path]) -> None:
    for file in files:
        if not file.is_file():
            err.print(f"[red]error:[/] no such file: {file}")
            raise typer.Exit(2)


@app.command("crawl")
def crawl_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A declared site source.")],
    max_pages: Annotated[int | None, typer.Option(min=1, help="Pages to fetch at most.")] = None,
    max_depth: Annotated[int | None, typer.Option(min=0, help="Links to follow from a start URL.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every skipped URL.")] = False,
) -> None:
    """Crawl a declared site within its scope, politely (robots.txt, delays), indexing every face."""
    from .ingest.remote import crawl_feed

    settings = _with_workers(ctx.obj.settings, workers)
    db = _open(settings)
    source = _source(ctx, db, name, "site", None)
    feed = crawl_feed(settings, db, source, max_pages, max_depth)
    summary = _ingest(settings, db, source, feed, None, verbose)
    if feed.result is not None and feed.result.resumed:
        out.print(f"Resumed an interrupted crawl: {feed.result.resumed} images stored by it were not fetched again.")
    if feed.result is not None and feed.result.limit_reached:
        out.print("The page limit was reached: raise --max-pages to crawl further.")
    if summary.pages == 0:
        refused = {"refused_address", "robots_unreachable"} & set(summary.skipped)
        hint = (" Its address is not public: a local or private site must be listed in FACETRAIL_FETCH_ALLOW "
                "(host:port)." if refused else "")
        err.print(f"[red]error:[/] no page of {source.name!r} could be crawled.{hint}", soft_wrap=True)
        raise typer.Exit(1)


@ingest_app.command("urls")
def ingest_urls(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A text file: one image URL per line (# comments).")],
    source: Annotated[str, typer.Option(help="The urls source to ingest into.")],
    legal_basis: Annotated[str | None, typer.Option(help="Declare the source now, with this legal basis.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every skipped URL.")] = False,
) -> None:
    """Fetch and index the image URLs listed in FILE (same safety rules as the crawler)."""
    from .ingest.remote import read_url_list, urls_feed

    settings = _with_workers(ctx.obj.settings, workers)
    _require_files([file])
    db = _open(settings)
    found = _source(ctx, db, source, "urls", legal_basis)
    urls = read_url_list(file)
    _ingest(settings, db, found, urls_feed(settings, found, urls), len(urls), verbose)


@ingest_app.command("warc")
def ingest_warc(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="WARC files (.warc or .warc.gz).")],
    source: Annotated[str, typer.Option(help="The warc source to ingest into.")],
    legal_basis: Annotated[str | None, typer.Option(help="Declare the source now, with this legal basis.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every skipped record.")] = False,
) -> None:
    """Index the pages and images archived in web archives; provenance is the archived URL and date."""
    from .ingest.remote import warc_feed

    settings = _with_workers(ctx.obj.settings, workers)
    _require_files(files)
    db = _open(settings)
    found = _source(ctx, db, source, "warc", legal_basis)
    _ingest(settings, db, found, warc_feed(settings, found, files), None, verbose)


@app.command("worker")
def worker_command(
    ctx: typer.Context,
    batch: Annotated[int, typer.Option(min=1, help="Files claimed at a time.")] = 16,
    lease: Annotated[float, typer.Option(min=1, help="Seconds a claim lasts; a dead worker's files are "
                                         "claimed again after it.")] = 300,
    until_empty: Annotated[bool, typer.Option("--until-empty", help="Stop when the queue is empty.")] = False,
    name: Annotated[str | None, typer.Option(help="Worker name in the queue (default: host:pid).")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
) -> None:
    """Ingest queued files (`facetrail index PATH --queue`); run any number of workers, on any number
    of machines sharing a PostgreSQL database."""
    from .index import open_index
    from .ingest.worker import DatabaseOnly, default_name, run_worker

    settings = _with_workers(ctx.obj.settings, workers)
    db = _open(settings)
    # FAISS files belong to one process: workers then write the database only (the index follows it)
    index = open_index(settings, db) if settings.vector_uri else DatabaseOnly()
    who = name or default_name()
    err.print(f"worker {who}: waiting for queued files (Ctrl-C stops at once, SIGTERM after the files in hand)")

    def report(summary) -> None:
        err.print(f"worker {who}: {summary.files} files, {summary.images} images, {summary.faces} faces "
                  f"({summary.files / max(summary.seconds, 1e-9):.1f} files/s)", markup=False)

    try:
        summary = run_worker(settings, db, index, who, batch=batch, lease_seconds=lease,
                             until_empty=until_empty, on_batch=report)
    except KeyboardInterrupt:
        err.print(f"worker {who}: stopped; the files it held are back in the queue")
        raise typer.Exit(130) from None
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(summary.skipped.items())) or "none"
    out.print(f"Done: {summary.files} files, {summary.images} new images, {summary.faces} faces, "
              f"skipped: {skipped}; {summary.seconds:.1f} s")
