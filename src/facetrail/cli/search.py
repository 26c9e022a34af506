"""Searching and what follows a search: `search`, `results`, `approvals`, `approve`, `deny`, `confirm`,
`subject-report`. Every search and decision is written to the audit log by the Searcher."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..config import Settings
from ..errors import Refused
from .common import acting, err, literal, open_db, out

commands = typer.Typer()


@commands.command()
def search(
    ctx: typer.Context,
    photos: Annotated[list[Path], typer.Argument(help="Query photo(s); each is searched separately, unless "
                                                      "--one-person.")],
    purpose: Annotated[str, typer.Option(help="Purpose category (see FACETRAIL_PURPOSES); recorded.")] = "",
    justification: Annotated[str, typer.Option(help="Why this search is needed; recorded.")] = "",
    case: Annotated[str, typer.Option("--case", help="Case reference; recorded.")] = "",
    face: Annotated[int | None, typer.Option(help="Which face in the photo (index; default the largest).")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", min=1, max=1000, help="Number of results.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Largest distance reported [default: the model's "
                                                         "calibrated threshold].")] = None,
    one_person: Annotated[bool, typer.Option("--one-person", help="The photos (1-10) show one person: one search, "
                                             "each result matched against the nearest photo.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per photo (JSON Lines).")] = False,
    urgent: Annotated[bool, typer.Option(help="Urgent: results at once, approval due within 48 h.")] = False,
    mode: Annotated[
        str, typer.Option(help="faces: where the person appears; copies: copies of this very photo.")
    ] = "faces",
) -> None:
    """Find where the person in PHOTO appears (or, with --mode copies, copies of the photo itself).
    Every search is written to the audit log."""
    from ..search import Searcher, check_request

    settings: Settings = ctx.obj.settings
    if mode not in ("faces", "copies"):
        err.print("[red]error:[/] --mode is faces or copies")
        raise typer.Exit(2)
    for photo in photos:
        if not photo.is_file():
            err.print(f"[red]error:[/] no such file: {literal(photo)}")
            raise typer.Exit(2)
    db = open_db(settings)
    actor = acting(ctx, db, "search")
    check_request(settings, actor, purpose, justification, case, urgent)  # before loading the model
    searcher = Searcher.open(settings, db)
    if one_person:
        if mode == "copies":
            err.print("[red]error:[/] --one-person is for face searches, not --mode copies")
            raise typer.Exit(2)
        result = searcher.search([p.read_bytes() for p in photos], actor=actor, purpose=purpose,
                                 justification=justification, case_ref=case, face=face if len(photos) == 1 else None,
                                 top_k=top_k, threshold=threshold, name=[str(p) for p in photos], urgent=urgent)
        if as_json:
            sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        else:
            _print_result(photos[0] if len(photos) == 1 else Path(f"{len(photos)} photos of one person"), result)
        raise typer.Exit(1 if result.error else 0)
    failures = 0
    for photo in photos:
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
        failures += bool(result.error)
        if as_json:
            sys.stdout.write(json.dumps(result.to_dict()) + "\n")
            sys.stdout.flush()
        else:
            _print_result(photo, result)
    if failures == len(photos):
        raise typer.Exit(1)


def _print_copies(photo: Path, result) -> None:
    out.print(f"[bold]{literal(photo)}[/]: copies of this photo")
    if result.error:
        out.print(f"[red]error:[/] {literal(result.error)}")
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
                      image["last_seen"][:10],
                      "\n".join(map(literal, where[:5])) + (f"\n(+{len(where) - 5})" if len(where) > 5 else ""))
    out.print(table)
    out.print(f"(search {result.audit_id})")


def _print_result(photo: Path, result) -> None:
    if result.mode == "copies":
        _print_copies(photo, result)
        return
    faces = result.query["faces"]
    out.print(f"[bold]{literal(photo)}[/]: {len(faces)} face(s) found")
    for f in faces:
        mark = "*" if f["index"] == result.query["selected"] else " "
        out.print(f" {mark} face {f['index']}: box {tuple(f['box'])}, {f['size']} px")
    if result.error:
        out.print(f"[red]error:[/] {literal(result.error)}")
        return
    if result.approval and result.approval["policy"] == "prior" and result.approval["state"] == "pending":
        out.print(f"Results withheld until a supervisor approves (approval {result.approval['id']}, "
                  f"search {result.audit_id}).")
        return
    if not result.results:
        out.print("No match within the threshold.")
        return
    several = len(result.query.get("photos") or []) > 1
    table = Table("#", "face", "distance", "similarity", "checked", *(["photo"] if several else []))
    table.add_column("where (page or file)", overflow="fold")
    for rank, m in enumerate(result.results, 1):
        places = [literal(a["page_url"] or a["location"]) + (" (gone)" if a["gone"] else "")
                  for a in m.image["appearances"]]
        more = f"\n(+{len(places) - 3} more)" if len(places) > 3 else ""
        table.add_row(
            str(rank), str(m.face_id), f"{m.distance:.3f}", f"{m.similarity:.2f}", m.verification.get("state", ""),
            *([str(m.query_photo + 1)] if several else []), "\n".join(places[:3]) + more,
        )
    out.print(table)
    out.print(f"(search {result.audit_id}; confirm a match with `facetrail confirm {result.audit_id} FACE`)")


@commands.command()
def results(
    ctx: typer.Context,
    search_id: int,
    as_json: Annotated[bool, typer.Option("--json", help="The result object as JSON.")] = False,
) -> None:
    """Show an earlier search's results (yours, or any as a supervisor) once they may be seen."""
    from ..search import Searcher

    settings = ctx.obj.settings
    db = open_db(settings)
    actor = acting(ctx, db, "search")
    result = Searcher.open(settings, db).results_of(actor, search_id)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
        return
    result.query.setdefault("faces", [])
    _print_result(Path(f"search {search_id}"), result)


@commands.command("approvals")
def approvals_command(ctx: typer.Context) -> None:
    """List searches waiting for a supervisor's decision (supervisors)."""
    from ..governance import approvals

    db = open_db(ctx.obj.settings)
    acting(ctx, db, "approve")
    table = Table("id", "search", "policy", "requester", "purpose", "case", "justification", "due")
    with db.session() as session:
        items = approvals.queue(session)
    for item in items:
        due = "OVERDUE" if item["overdue"] else (item["due_at"] or "")[:16]
        table.add_row(str(item["id"]), str(item["search_id"]), literal(item["policy"]), literal(item["requester"]),
                      literal(item["purpose"] or ""), literal(item["case_ref"] or ""),
                      literal(item["justification"] or ""), due)
    out.print(table)


def _decide(ctx: typer.Context, approval_id: int, approve: bool, reason: str) -> None:
    from ..search import Searcher

    settings = ctx.obj.settings
    db = open_db(settings)
    actor = acting(ctx, db, "approve")
    result = Searcher.open(settings, db).decide(actor, approval_id, approve, reason)
    out.print(f"Search {result['search_id']} {literal(result['state'])} by {literal(actor.username)}.")


@commands.command()
def approve(
    ctx: typer.Context,
    approval_id: int,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
) -> None:
    """Approve a search (supervisors; never your own)."""
    _decide(ctx, approval_id, True, reason)


@commands.command()
def deny(
    ctx: typer.Context,
    approval_id: int,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
) -> None:
    """Deny a search (supervisors; never your own); a prior search's held descriptor is deleted."""
    _decide(ctx, approval_id, False, reason)


@commands.command("confirm")
def confirm_command(
    ctx: typer.Context,
    search_id: Annotated[int, typer.Argument(help="The search's audit id (printed with its results).")],
    face_id: Annotated[int, typer.Argument(help="The result's face id.")],
) -> None:
    """Confirm that a result of a search you may see shows the person searched for; a second person
    verifies it."""
    from ..search.service import confirm_match

    db = open_db(ctx.obj.settings)
    actor = acting(ctx, db, "search")
    result = confirm_match(db, actor, search_id, face_id)
    out.print(f"Face {face_id} in case {literal(result['case_ref'])}: {result['state']} "
              f"(by {literal(', '.join(result['confirmed_by']))})")


@commands.command("subject-report")
def subject_report(
    ctx: typer.Context,
    photo: Annotated[Path | None, typer.Argument(help="A photo of the data subject's face (asks for a report).")] = None,
    request_ref: Annotated[str, typer.Option("--request-ref", help="The request's reference in your register, "
                                             "e.g. DSR-2026-0042.")] = "",
    received: Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"], help="When the request was received.")] = None,
    identity_check: Annotated[str, typer.Option(help="How the person's identity was checked: id-document, "
                                                "in-person, signed-letter or legal-representative.")] = "",
    pending: Annotated[bool, typer.Option("--pending", help="List requests waiting for a second admin.")] = False,
    approve: Annotated[int | None, typer.Option(help="Approve request APPROVAL (a second admin).")] = None,
    deny: Annotated[int | None, typer.Option(help="Deny request APPROVAL (a second admin).")] = None,
    reason: Annotated[str, typer.Option(help="Why approved or denied (recorded).")] = "",
    search_id: Annotated[int | None, typer.Option("--search", help="Make the report of your approved request.")] = None,
    output: Annotated[Path | None, typer.Option("--out", help="Write the report here (default: print).")] = None,
) -> None:
    """Subject access reports (admins): what the index holds for a person's face.

    Ask with PHOTO, --request-ref, --received and --identity-check: the request is recorded and held
    for a second admin (--pending lists them; --approve/--deny APPROVAL --reason decides); then
    --search SEARCH makes the report, for the admin who asked."""
    from ..governance import approvals
    from ..search import Searcher

    settings = ctx.obj.settings
    db = open_db(settings)
    actor = acting(ctx, db, "subject.report")
    if pending:
        with db.session() as session:
            waiting = approvals.pending(session, subject_access=True)
            for approval, entry in waiting:  # the reference, date and check were validated when asked
                details = {name: literal(entry.details.get(name)) for name in ("request_ref", "received",
                                                                             "identity_check")}
                out.print(f"approval {approval.id}: request {details['request_ref']} received "
                          f"{details['received']}, identity checked by {details['identity_check']}; "
                          f"asked by {literal(approval.requester)} at {approval.created_at.isoformat()[:16]} "
                          f"(search {approval.search_id})", soft_wrap=True)
        if not waiting:
            out.print("No subject access request is waiting.")
        return
    if approve is not None or deny is not None:
        decided = Searcher.open(settings, db).decide(actor, approve if approve is not None else deny,
                                                     approve is not None, reason)
        out.print(f"Subject access request (search {decided['search_id']}) {decided['state']} by {literal(actor.username)}.")
        return
    if search_id is not None:
        report = Searcher.open(settings, db).subject_report(actor, search_id)
        text = json.dumps(report, indent=2, ensure_ascii=False)
        if output:
            output.write_text(text + "\n")
            out.print(f"{len(report['images'])} images written to {literal(output)} (recorded as audit entry "
                      f"{report['audit_id']}).")
        else:
            sys.stdout.write(text + "\n")
        return
    if photo is None or not photo.is_file():
        raise Refused(f"no such file: {photo}" if photo else "give a photo of the person's face "
                      "(or --pending, --approve, --deny, --search)")
    asked = Searcher.open(settings, db).request_subject_report(
        actor, photo.read_bytes(), request_ref=request_ref, received=received.date() if received else None,
        identity_check=identity_check)
    out.print(f"Subject access request {literal(asked['request_ref'])} recorded as search {asked['search_id']}; "
              f"held for a second admin's approval (approval {asked['approval']['id']}). Another admin runs "
              f"`facetrail subject-report --approve {asked['approval']['id']} --reason ...`; then "
              f"`facetrail subject-report --search {asked['search_id']} --out FILE`.", soft_wrap=True)
