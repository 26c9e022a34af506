"""Face models: `models` (the registry) and `evaluate` (a model's error rates on labelled photos)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..config import Settings
from .common import literal, open_db, operator, out, progress, refuse

commands = typer.Typer()


@commands.command()
def models(ctx: typer.Context) -> None:
    """The face models facetrail can run: source, licence, size, thresholds; the active one marked."""
    from ..faces.registry import MODELS

    settings: Settings = ctx.obj.settings
    db = open_db(settings)  # face_model not set: the stored faces' model is the active one
    for info in MODELS.values():
        calibration = info.calibration
        bands = ", ".join(f"{b.name} < {b.max_distance:g}" for b in calibration.bands[:-1])
        active = " (active)" if info.name == settings.face_model else ""
        out.print(f"[bold]{info.name}[/]{active}: {info.description}\n"
                  f"  version {info.version}; licence: {info.licence}\n"
                  f"  weights from: {', '.join(info.sources)}\n"
                  f"  {info.dim}-d, {info.metric}; match threshold {calibration.match_threshold:g}, "
                  f"deletion radius {calibration.deletion_radius:g}; bands: {bands}", soft_wrap=True, highlight=False)
    out.print("sha256 of each weight file: docs/models.md; checked before a model is loaded.")
    _bands_at_this_size(settings, db)


def _bands_at_this_size(settings: Settings, db) -> None:
    """What the bands mean at the size of this data folder's index (docs/models.md)."""
    from ..search.bands import FPIR_BANDS, bands_at
    from ..search.stats import face_count

    size = face_count(db)
    if not size:
        return
    bands = bands_at(size, settings.face_model)[:-1]
    words = ", ".join(f"{b.name} < {b.max_distance:.3f} (1 in {round(1 / rate):,})"
                      for b, (_, rate) in zip(bands, FPIR_BANDS))
    out.print(f"At this index's size ({size:,} faces), a search for someone not in it shows a face closer than: "
              f"{words}.", soft_wrap=True, highlight=False)


@commands.command()
def evaluate(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="Labelled folder: photos and manifest.csv (path, identity[, group]).",
                                           exists=True, file_okay=False)],
    model: Annotated[str | None, typer.Option("--model", help="Model to measure (default: the active one).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full report as JSON here.")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write the report as an HTML page here.")] = None,
) -> None:
    """Measure a face model on labelled photos: rank-1/rank-10, FNIR at FPIR 0.003, TAR at FAR 1e-3 and
    1e-4, failure to enrol, with bootstrap intervals. The run is recorded in the audit log."""
    from ..search.evaluate import evaluate as run, figure_text, to_html, to_json

    settings: Settings = ctx.obj.settings
    db = open_db(settings)
    actor = operator(ctx, db)
    with progress() as bar:
        task = bar.add_task("evaluating", total=None)
        report = run(settings, db, actor, folder, model, lambda n: bar.advance(task, n),
                     lambda total: bar.update(task, total=total))
    if json_out:
        json_out.write_text(to_json(report))
    if html_out:
        html_out.write_text(to_html(report))
    table = Table("figure", *report["figures"])
    for name in [n for n in report["figures"]["all"] if n != "counts"]:
        table.add_row(name, *(figure_text(figures[name]) for figures in report["figures"].values()))
    out.print(f"model {literal(report['model'])}: {report['people']} people, "
              f"{report['figures']['all']['counts']['photos']} photos", soft_wrap=True)
    out.print(table)


@commands.command()
def reembed(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", help="The model to describe every stored face with.")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Faces per transaction.")] = 32,
    background: Annotated[bool, typer.Option(
        "--background", help="Queue it for `facetrail worker` instead of running it here.")] = False,
    status: Annotated[bool, typer.Option("--status", help="Show the queued re-embed's progress.")] = False,
    cancel: Annotated[bool, typer.Option(
        "--cancel", help="Cancel the queued re-embed; the faces described so far are kept for a later one.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --status: print it as JSON.")] = False,
) -> None:
    """Describe every stored face with another model (from the kept face crops; resumable: rerun
    after an interruption), then switch to it in one recorded transaction and build its index.
    The active model's index serves until the switch; servers, workers and commands without
    face_model set follow it by themselves. With --background, a running `facetrail worker` does
    it between its ingest batches (`--status` shows its progress, `--cancel` stops it)."""
    settings: Settings = ctx.obj.settings
    if status or cancel:
        if model or background:
            refuse("--status and --cancel take no --model or --background")
        return _reembed_status(ctx, as_json) if status else _reembed_cancel(ctx)
    if model is None:
        refuse("name the model to switch to: --model NAME (see `facetrail models`)")
    if background:
        return _reembed_queue(ctx, model, batch)
    from ..index import FOLLOW_SECONDS
    from ..ingest.reembed import after_switch, preflight, reembed as run

    db = open_db(settings)
    actor = operator(ctx, db)
    total = preflight(db, model)  # refused before the progress bar shows
    with progress() as bar:
        task = bar.add_task(f"describing faces with {model}", total=total)
        done = run(settings, db, actor, model, batch, lambda n: bar.advance(task, n))
    out.print(f"switched to {literal(model)} (from {literal(', '.join(done.previous) or 'none')}): "
              f"{done.faces} faces described, {done.dropped} without a face for it removed; its index was "
              f"built before the switch.\n{after_switch(settings, model, FOLLOW_SECONDS)}",
              soft_wrap=True, highlight=False)


def _reembed_queue(ctx: typer.Context, model: str, batch: int) -> None:
    from ..ingest.reembed import queue

    settings: Settings = ctx.obj.settings
    db = open_db(settings)
    job, new = queue(db, operator(ctx, db), model, batch)
    verb = "Queued" if new else "Already queued:"
    out.print(f"{verb} re-embed job {job['id']} to {literal(model)} ({job['total']} faces to describe). A running "
              "`facetrail worker` runs it between ingest batches; the current index serves until the switch. "
              "`facetrail reembed --status` shows its progress.", soft_wrap=True, highlight=False)


def _reembed_status(ctx: typer.Context, as_json: bool) -> None:
    import json

    from ..ingest.reembed import jobs

    db = open_db(ctx.obj.settings)
    found = jobs(db)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    if not found:
        out.print("No re-embed was queued.")
        return
    for job in found:
        worker = f", worker {literal(job['worker'])}" if job["worker"] else ""
        if job["lease_ran_out"]:
            worker += " (its lease ran out: the next worker takes it over)"
        error = f": {literal(job['error'])}" if job["error"] else ""
        out.print(f"job {job['id']}: {literal(job['model'])}, {job['status']}{worker}, {job['described']}/"
                  f"{job['total']} faces described, queued by {literal(job['queued_by'])} at "
                  f"{job['created_at']}{error}", soft_wrap=True, highlight=False)


def _reembed_cancel(ctx: typer.Context) -> None:
    from ..ingest.reembed import cancel

    db = open_db(ctx.obj.settings)
    job = cancel(db, operator(ctx, db))
    if job is None:
        refuse("no re-embed is queued or running")
    out.print(f"Cancelled re-embed job {job['id']} to {literal(job['model'])} after {job['described']} faces; "
              "the faces described are kept: a later `facetrail reembed` to it resumes from them.",
              soft_wrap=True, highlight=False)
