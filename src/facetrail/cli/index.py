"""The vector index and its consistency: `reindex`, `stats`, `check`, `index-status`."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from ..config import Settings
from ..errors import Refused
from .common import err, literal, open_db, out, progress

commands = typer.Typer()


@commands.command()
def reindex(ctx: typer.Context) -> None:
    """Rebuild the vector index from the database."""
    from ..index import rebuild
    from ..search.stats import face_count

    settings: Settings = ctx.obj.settings
    db = open_db(settings)
    total = face_count(db)
    try:
        with progress() as bar:
            task = bar.add_task("reindexing", total=total)
            index = rebuild(settings, db, lambda n: bar.advance(task, n))
    except RuntimeError as exc:  # e.g. another process (the web app) owns the index
        raise Refused(f"{exc}; stop it first") from None  # printed literally by refuse
    out.print(f"Index rebuilt: {len(index)} faces ({index.kind}).")


@commands.command()
def stats(ctx: typer.Context) -> None:
    """Counts of images, faces and locations."""
    from ..index import open_index
    from ..search.stats import counts

    settings: Settings = ctx.obj.settings
    db = open_db(settings)
    n = counts(db, open_index(settings, db))
    out.print(f"images: {n['images']}\nfaces: {n['faces']}\nlocations: {n['locations']}")
    out.print(f"opt-outs: {n['opt_outs']['opt_outs']} ({n['opt_outs']['faces_removed']} faces removed)")
    out.print(f"index: {n['index']['kind']}, {n['index']['size']} vectors\n"
              f"data folder: {literal(settings.data_dir.resolve())}", soft_wrap=True)


@commands.command()
def check(
    ctx: typer.Context,
    repair: Annotated[bool, typer.Option("--repair", help="Fix what can be fixed (the database is the truth).")] = False,
) -> None:
    """Check that the database, the vector index and the media folder agree."""
    from ..index.check import check as run_check

    db = open_db(ctx.obj.settings)
    report = run_check(ctx.obj.settings, db, repair=repair)
    out.print(
        f"faces in database: {report.faces}, in index: {report.index_size}\n"
        f"missing from index: {report.missing_from_index}, stale in index: {report.stale_in_index}\n"
        f"images found nowhere: {report.orphan_images}, media files of no image: {report.orphan_media}, "
        f"images without a thumbnail: {report.missing_media}",
        soft_wrap=True,
    )
    if (report.missing_from_index or report.stale_in_index) and not report.repaired:
        out.print("The vector index is not in step with the database, as after an interrupted ingest or a "
                  "killed process: the database is the truth, and the next command that opens the index "
                  "(search, index, serve, ...) or `facetrail check --repair` brings the index in step from it.",
                  soft_wrap=True)
    if report.ok:
        out.print("OK: consistent")
    elif report.repaired:
        out.print("REPAIRED: run `facetrail check` again to confirm")
    else:
        out.print("INCONSISTENT: run `facetrail check --repair` to fix")
        raise typer.Exit(1)


def _bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _table(status: dict[str, Any]) -> Table:
    table = Table("", "", show_header=False, box=None)
    rows: list[tuple[str, str]] = [
        ("backend", f"{status['backend']} ({literal(status['location'])})"),
        ("kind", status["kind"]),
        ("faces", (f"{status['faces']} (database: {status['database_faces']}, "
                   f"{'in step' if status['in_step'] else 'NOT in step: an open or sync brings it in step'})")),
        ("training", status["training"] + (" (due)" if status.get("needs_training") else "")),
        ("exact limit", f"{status['exact_limit']} faces"),
        ("memory", _bytes(status["memory_bytes"]) + (
            f" ({status['bytes_per_face']:.0f} B per face)" if status.get("bytes_per_face") is not None else "")),
    ]
    if "nlist" in status:
        rows.append(("lists", f"{status['nlist']} ({status['nprobe']} probed per query), PQ {status['pq']}"))
    if status.get("deleted_rows"):
        rows.append(("deleted rows", f"{status['deleted_rows']} (filtered; codes dropped at the next compaction)"))
    if status.get("mode", "owner") != "owner":
        rows.append(("mode", status["mode"]))
    if status.get("last_training_seconds") is not None:
        rows.append(("last training", f"{status['last_training_seconds']:.1f} s"))
    if status.get("training_error"):
        rows.append(("training error", literal(status["training_error"])))
    for name, size in status["files"].items():
        rows.append(("file", f"{literal(name)}  {_bytes(size)}"))
    rows.append(("on disk", _bytes(status["disk_bytes"])))
    for key, value in rows:
        table.add_row(key, value)
    return table


@commands.command("index-status")
def index_status_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="The status as one JSON object.")] = False,
    train: Annotated[
        bool,
        typer.Option("--train", help="Bring the index in step with the database and (re)train the compressed "
                     "index now, in the foreground, if the gallery is above the exact limit."),
    ] = False,
) -> None:
    """Show the vector index: kind, size against the database, training state, memory, files."""
    from ..index import index_status, open_index

    settings: Settings = ctx.obj.settings
    db = open_db(settings)
    say = err if as_json else out  # keep stdout pure JSON
    index = None
    if train:
        started = time.monotonic()
        index = open_index(settings, db)  # in step; trains here if a training was due
        if not index.trainable:
            say.print("Milvus builds its own index: nothing to train.")
        elif not index.owner:
            say.print(f"[red]refused:[/] the index is written by another process (pid {index.owner_pid}).")
            raise typer.Exit(2)
        elif len(index) < index.threshold:
            say.print(f"{len(index)} faces, within the exact limit ({settings.exact_limit}): "
                      "exact search, nothing to train.")
        else:
            if not index.trainings:  # open_index did not just train it
                say.print(f"Training the compressed index on {len(index)} faces...")
                index.train_now()
            say.print(f"Trained in {time.monotonic() - started:.1f} s: {index.kind}.")
    status = index_status(settings, db, index)
    if as_json:
        sys.stdout.write(json.dumps(status) + "\n")
    else:
        out.print(_table(status))
