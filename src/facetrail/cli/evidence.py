"""Evidence packages: `evidence export SEARCH_ID | --case REF` writes a signed WACZ package of what
you may see of a search (or of every search of a case you may see); `evidence verify PACKAGE`
checks one offline, line by line (exit 1 if anything fails)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from .audit import deliver_to_witnesses
from .common import acting, err, literal, open_db, out, refuse

commands = typer.Typer()
evidence_app = typer.Typer(help="Signed evidence packages (WACZ) of searches, verifiable offline.",
                           no_args_is_help=True)
commands.add_typer(evidence_app, name="evidence")


@evidence_app.command("export")
def evidence_export(
    ctx: typer.Context,
    search_id: Annotated[int | None, typer.Argument(help="The search's id (its audit entry).")] = None,
    case: Annotated[str | None, typer.Option("--case", help="Instead: every search of this case you may see.")] = None,
    output: Annotated[Path | None, typer.Option("--out", help="File to write (default: a name in the current "
                                                              "folder, printed).")] = None,
    query_photo: Annotated[
        Path | None,
        typer.Option("--include-query-photo", help="Add the photo searched with (only its sha256 is in the package "
                                                   "otherwise); it must be that very photo."),
    ] = None,
) -> None:
    """Write a signed WACZ evidence package: results, captures, crops, the query's sha256, audit
    entries with inclusion proofs, approvals, confirmations and a CASE/UCO description (recorded)."""
    from ..search import Searcher
    from ..search import evidence

    if (search_id is None) == (case is None):
        refuse("give a search id, or --case REF")
    photo = None
    if query_photo is not None:
        try:
            photo = query_photo.read_bytes()
        except OSError as exc:
            refuse(f"cannot read {query_photo}: {exc}")
    settings = ctx.obj.settings
    db = open_db(settings)
    actor = acting(ctx, db, "cases.read")
    searcher = Searcher.open(settings, db)
    if case is not None:
        package = evidence.export_case(searcher, actor, case, photo)
    else:
        package = evidence.export_search(searcher, actor, search_id, photo)
    target = output or Path(package.filename)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # faces: private like the data folder
    with os.fdopen(fd, "wb") as handle:
        handle.write(package.data)
    for note in package.notes:
        err.print(f"note: {literal(note)}", soft_wrap=True)
    deliver_to_witnesses(db, "yellow")  # the checkpoint the export signed, at once, as `audit checkpoint` does
    out.print(f"Evidence package of {len(package.searches)} search(es) written to {literal(target)}: "
              f"{len(package.data)} bytes, sha256 {package.sha256} (audit entry {package.audit_id})", soft_wrap=True)


@evidence_app.command("verify")
def evidence_verify(
    package: Annotated[Path, typer.Argument(help="The .wacz package.")],
    key: Annotated[
        str | None,
        typer.Option("--key", help="The verifier key it must be signed with (text or a file holding it; "
                                   "`facetrail audit key` prints it). Without it, the key found is named."),
    ] = None,
    tsa_root: Annotated[
        Path | None,
        typer.Option("--tsa-root", help="PEM certificate(s) of the time-stamping authority's root: the package's "
                                        "checkpoint must carry its RFC 3161 timestamp."),
    ] = None,
) -> None:
    """Check a package offline: every file's sha256, the package's digest and Ed25519 signature, the
    WACZ index, every audit entry's hash and its inclusion proof against the signed checkpoint.
    Prints each check; exit 1 if any fails."""
    from ..search import wacz

    if not package.is_file():
        refuse(f"no file {package}")
    expected = Path(key).read_text() if key and Path(key).is_file() else key
    roots = None
    if tsa_root is not None:
        try:
            roots = tsa_root.read_bytes()
        except OSError as exc:
            refuse(f"cannot read {tsa_root}: {exc}")
    checks = wacz.verify(package, expected, roots)
    for check in checks:
        out.print(literal(check.line()), soft_wrap=True, highlight=False)
    failed = [c for c in checks if not c.ok]
    if failed:
        out.print(f"FAILED: {len(failed)} of {len(checks)} checks failed", highlight=False)
        raise typer.Exit(1)
    out.print(f"OK: {len(checks)} checks passed", highlight=False)
