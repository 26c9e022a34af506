"""`facetrail source ...`: declare and manage sources (nothing outside a declared source is indexed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import acting, literal, open_db, operator, out

commands = typer.Typer()
source_app = typer.Typer(help="Declare and manage sources: nothing outside a declared source is indexed.",
                         no_args_is_help=True)
commands.add_typer(source_app, name="source")


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
    ignore_robots: Annotated[str | None, typer.Option(
        metavar="REASON", help="A URL list only: fetch its URLs whatever robots.txt says, for this reason "
        "(recorded in the audit log).")] = None,
    every: Annotated[str | None, typer.Option(
        help="A site only: crawl it again on its own this often (e.g. 1d, 6h; at least 10m), run by "
        "`facetrail scheduler`.")] = None,
    render_js: Annotated[bool, typer.Option(
        "--render-js", help="A site only: render its pages in Chromium (their scripts run) before reading "
        "them; the browser fetches only what the crawler may (needs: pip install 'facetrail[js]', "
        "apt-get install chromium).")] = False,
) -> None:
    """Declare a source with its scope and legal basis (audited)."""
    from ..ingest.schedule import parse_every
    from ..ingest.sources import SourceSpec, add_source

    try:
        seconds = parse_every(every) if every is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--every") from None
    db = open_db(ctx.obj.settings)
    options = {k: v for k, v in {"max_pages": max_pages, "max_depth": max_depth,
                                 "ignore_robots": ignore_robots, "every": seconds,
                                 "render_js": render_js or None}.items() if v is not None}
    spec = SourceSpec(name, kind, legal_basis, start_urls=tuple(url or ()), hosts=tuple(host or ()),
                      prefixes=tuple(prefix or ()), paths=tuple(map(str, path or ())), options=options)
    with db.session() as session, session.begin():
        source = add_source(session, operator(ctx, db), spec)
    out.print(f"Source {literal(repr(source.name))} ({literal(source.kind)}) declared; "
              f"scope: {literal(json.dumps(source.scope))}", soft_wrap=True)


@source_app.command("list")
def source_list(ctx: typer.Context) -> None:
    """Sources with their kind, status, scope and what they hold."""
    from ..ingest.sources import counts, list_sources

    db = open_db(ctx.obj.settings)
    table = Table("name", "kind", "status", "images", "faces", "last run", "legal basis")
    table.add_column("scope", overflow="fold")
    with db.session() as session:
        for source in list_sources(session):
            n = counts(session, source)
            scope = source.scope.get("paths") or source.scope.get("hosts") or ["any public host"]
            table.add_row(literal(source.name), literal(source.kind), literal(source.status), str(n["images"]),
                          str(n["faces"]),
                          source.last_run_at.isoformat(timespec="seconds") if source.last_run_at else "never",
                          literal(source.legal_basis), literal(", ".join(scope)))
    out.print(table)


@source_app.command("show")
def source_show(
    ctx: typer.Context,
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="As one JSON object.")] = False,
) -> None:
    """Everything about one source: scope, legal basis, owner, runs and counts."""
    from ..ingest.sources import as_dict, counts, get_source

    db = open_db(ctx.obj.settings)
    with db.session() as session:
        source = get_source(session, name)
        data = {**as_dict(source), "counts": counts(session, source)}
    if as_json:
        out.print_json(json.dumps(data))
        return
    for key, value in data.items():
        out.print(f"[bold]{literal(key)}[/]: {literal(json.dumps(value) if isinstance(value, dict | list) else value)}",
                  soft_wrap=True)


def _set_status(ctx: typer.Context, name: str, status: str) -> None:
    """Suspending or resuming a source is an account's decision (not the local operator's)."""
    from ..ingest.sources import set_status

    db = open_db(ctx.obj.settings)
    actor = acting(ctx, db, "sources.manage")
    with db.session() as session, session.begin():
        set_status(session, actor, name, status)
    out.print(f"Source {literal(repr(name))} is {status}.")


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
    """Remove a source: its appearances go, and faces seen in no other source leave the index
    (an admin's decision: needs an account, not only local access)."""
    from ..index import open_index
    from ..ingest import capture
    from ..ingest.sources import get_source, remove_source
    from ..store.cleanup import drop
    from ..store.media import MediaStore

    settings = ctx.obj.settings
    db = open_db(settings)
    actor = acting(ctx, db, "sources.manage")
    if not yes and not typer.confirm(f"Remove source {name!r} and everything found only through it?"):  # repr: literal
        raise typer.Exit(1)
    index = open_index(settings, db)
    with db.session() as session, session.begin():
        source_id = get_source(session, name).id
        orphans = remove_source(session, actor, name)
    faces = drop(orphans, index, MediaStore(settings.media_dir))
    index.save()
    capture.remove(settings, source_id)  # its WARC captures go with it
    out.print(f"Source {literal(repr(name))} removed: {len(orphans)} images and {faces} faces left the index.")
