"""Filling the index: `index` (folders), `crawl` (sites), `ingest urls|warc`, and `worker` (the queue).
Only declared sources are ingested; every run shows a progress bar and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import interrupts
from ..config import Settings
from .common import err, literal, open_db, operator, out, progress, with_workers

commands = typer.Typer()
ingest_app = typer.Typer(help="Ingest image URL lists and web archives into a source.", no_args_is_help=True)
commands.add_typer(ingest_app, name="ingest")


def _ingest(settings: Settings, db, source, stream, total: int | None, verbose: bool, pool=None):
    """Run an ingest of `source` over `stream` with a progress bar; print and return the summary.
    `pool`: analysis processes started earlier (their models load meanwhile)."""
    from ..index import open_index
    from ..ingest import Ingestor
    from ..ingest.sources import mark_run

    interrupts.defer_while_in_session()
    index = open_index(settings, db)
    ingestor = Ingestor(settings, db, index, source, pool=pool)
    interrupted = False
    with progress() as bar:
        task = bar.add_task(f"indexing {literal(source.name)}", total=total)
        try:
            ingestor.run(stream, lambda: bar.advance(task))
        except KeyboardInterrupt:
            interrupted = True
    with db.session() as session, session.begin():
        mark_run(session, source)
    summary = ingestor.summary
    if verbose or len(summary.errors) <= 20:
        for location, reason, message in summary.errors:
            err.print(f"[yellow]skipped[/] {literal(f'{location}: {reason} ({message})')}", soft_wrap=True)
    skipped = literal(", ".join(f"{n} {reason}" for reason, n in sorted(summary.skipped.items())) or "none")
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


def _source(ctx: typer.Context, db, name: str, kind: str, legal_basis: str | None):
    """The active source of `kind` to fill; declared on the spot (with `legal_basis`) if there is none."""
    from ..ingest.sources import source_to_ingest

    with db.session() as session, session.begin():
        return source_to_ingest(session, name, kind, legal_basis, lambda: operator(ctx, db))


def _require_files(files: list[Path]) -> None:
    for file in files:
        if not file.is_file():
            err.print(f"[red]error:[/] no such file: {literal(file)}")
            raise typer.Exit(2)


@commands.command("index")
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
    settings = with_workers(ctx.obj.settings, workers)
    for path in paths:
        if not path.exists():
            err.print(f"[red]error:[/] no such file or folder: {literal(path)}")
            raise typer.Exit(2)
    from ..ingest.pool import start_pool

    pool = None if queue else start_pool(settings)  # the analysis processes start while the rest loads
    try:
        from ..ingest import walk
        from ..ingest.sources import folder_source

        model = settings.face_model
        db = open_db(settings)  # the stored faces' model, if face_model is not set
        if pool is not None and settings.face_model != model:  # started for another model: again
            pool.shutdown(wait=True, cancel_futures=True)
            pool = start_pool(settings)
        with db.session() as session, session.begin():
            source = folder_source(session, operator(ctx, db), paths, legal_basis, source_name)
        entries = list(walk(paths))
        if pool is not None:
            _ingest(settings, db, source, entries, len(entries), verbose, pool)
            return
        from ..ingest.queue import enqueue

        with db.session() as session, session.begin():
            queued = enqueue(session, source, [e.location for e in entries])
        out.print(f"Queued {queued} of {len(entries)} files of source {literal(repr(source.name))} for "
                  "`facetrail worker`.")
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


@commands.command("crawl")
def crawl_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A declared site source.")],
    max_pages: Annotated[int | None, typer.Option(min=1, help="Pages to fetch at most.")] = None,
    max_depth: Annotated[int | None, typer.Option(min=0, help="Links to follow from a start URL.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every skipped URL.")] = False,
) -> None:
    """Crawl a declared site within its scope, politely (robots.txt, delays), indexing every face."""
    from ..ingest.remote import crawl_feed

    settings = with_workers(ctx.obj.settings, workers)
    db = open_db(settings)
    source = _source(ctx, db, name, "site", None)
    feed = crawl_feed(settings, db, source, max_pages, max_depth)
    summary = _ingest(settings, db, source, feed, None, verbose)
    feed.stored()  # fetched and stored (an interrupted ingest exits above): no resume marker
    if feed.result is not None and feed.result.resumed:
        out.print(f"Resumed an interrupted crawl: {feed.result.resumed} images stored by it were not fetched again.")
    if feed.result is not None and feed.result.limit_reached:
        out.print("The page limit was reached: raise --max-pages to crawl further.")
    if "image_budget" in summary.skipped:
        out.print("The crawl's image budget was reached (FACETRAIL_CRAWL_MAX_IMAGES): images beyond it were neither "
                  "fetched nor listed.", soft_wrap=True)
    if "deadline" in summary.skipped:
        out.print("The crawl reached its deadline (FACETRAIL_CRAWL_MAX_SECONDS): what was still queued was not "
                  "fetched; crawl again to go on.", soft_wrap=True)
    if summary.pages == 0:
        hint = (" Its address is not public: a local or private site must be listed in FACETRAIL_FETCH_ALLOW "
                "(host:port)." if "refused_address" in summary.skipped else
                " Its robots.txt could not be read (see robots_unreachable above): the site is left alone "
                "until it answers one that can be." if "robots_unreachable" in summary.skipped else "")
        err.print(f"[red]error:[/] no page of {literal(repr(source.name))} could be crawled.{hint}", soft_wrap=True)
        raise typer.Exit(1)


@commands.command("scheduler")
def scheduler_command(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Crawl the sources due now, then stop.")] = False,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
) -> None:
    """Crawl site sources declared with --every when they are due (each crawl in the audit log)."""
    import time

    from ..index import open_index
    from ..ingest.pool import start_pool
    from ..ingest.schedule import run_due

    settings = with_workers(ctx.obj.settings, workers)
    db = open_db(settings)
    pool = start_pool(settings)
    index = open_index(settings, db)

    def report(run) -> None:
        summary = run.summary
        out.print(f"{literal(run.source)}: {summary.pages} pages, {summary.files} files, {summary.images} new "
                  f"images, {summary.faces} faces, {summary.unchanged} unchanged", soft_wrap=True)

    try:
        while True:
            run_due(settings, db, index, pool=pool, on_run=report)
            if once:
                return
            time.sleep(60)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
    from ..ingest.remote import read_url_list, urls_feed

    settings = with_workers(ctx.obj.settings, workers)
    _require_files([file])
    db = open_db(settings)
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
    from ..ingest.remote import warc_feed

    settings = with_workers(ctx.obj.settings, workers)
    _require_files(files)
    db = open_db(settings)
    found = _source(ctx, db, source, "warc", legal_basis)
    _ingest(settings, db, found, warc_feed(settings, found, files), None, verbose)


@commands.command("worker")
def worker_command(
    ctx: typer.Context,
    batch: Annotated[int, typer.Option(min=1, help="Files claimed at a time.")] = 16,
    lease: Annotated[float, typer.Option(min=1, help="Seconds a claim lasts; a dead worker's files are "
                                         "claimed again after it.")] = 300,
    until_empty: Annotated[bool, typer.Option("--until-empty", help="Stop when the queue is empty.")] = False,
    name: Annotated[str | None, typer.Option(help="Worker name in the queue (default: host:pid).")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: one per core).")] = None,
) -> None:
    """Ingest queued files (`facetrail index PATH --queue`) and run a queued re-embed (`facetrail reembed
    --background`) between batches; run any number of workers, on any number of machines sharing a
    PostgreSQL database. Without face_model set, a worker follows a model switch before its next batch."""
    from ..index import open_index
    from ..ingest.worker import DatabaseOnly, default_name, run_worker

    settings = with_workers(ctx.obj.settings, workers)
    interrupts.defer_while_in_session()
    db = open_db(settings)
    # FAISS files belong to one process: workers then write the database only (the index follows it)
    def index_for(followed: Settings):
        return open_index(followed, db) if followed.vector_uri else DatabaseOnly()

    index = index_for(settings)
    who = literal(name or default_name())
    err.print(f"worker {who}: waiting for queued files and re-embeds, model {literal(settings.face_model)} "
              "(Ctrl-C stops at once, SIGTERM after the files in hand)", soft_wrap=True)

    def report(summary) -> None:
        err.print(f"worker {who}: {summary.files} files, {summary.images} images, {summary.faces} faces "
                  f"({summary.files / max(summary.seconds, 1e-9):.1f} files/s)")

    try:
        summary = run_worker(settings, db, index, who, batch=batch, lease_seconds=lease,
                             until_empty=until_empty, on_batch=report, reopen_index=index_for,
                             log=lambda message: err.print(f"worker {who}: {literal(message)}", soft_wrap=True))
    except KeyboardInterrupt:
        err.print(f"worker {who}: stopped; the files it held are back in the queue")
        raise typer.Exit(130) from None
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(summary.skipped.items())) or "none"
    out.print(f"Done: {summary.files} files, {summary.images} new images, {summary.faces} faces, "
              f"skipped: {skipped}; {summary.seconds:.1f} s")
