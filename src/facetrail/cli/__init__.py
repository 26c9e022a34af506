"""The `facetrail` command line: the app, its global options, and its command groups.

Each module holds one group of commands on a Typer of its own, merged here; modules import
`common`, never this package, so imports run one way. A `Refused` raised by any command is
printed as `refused: ...` with exit status 2 (`common.RefusingGroup`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..config import get_settings
from . import accounts, audit, cases, evidence, index, ingest, models, search, serve, sources, watches
from .common import Context, RefusingGroup, err, literal

app = typer.Typer(help="facetrail: an accountable, self-hosted face search engine.", no_args_is_help=True,
                  cls=RefusingGroup)
for group in (ingest, search, index, audit, serve, accounts, sources, models, cases, evidence, watches):
    app.add_typer(group.commands)


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
        typer.Option("--as", envvar="FACETRAIL_USER",
                     help="Act as this account, proven by its password (asked, or --password-stdin) or by an "
                          "admin-made binding to your operating-system login."),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="FACETRAIL_TOKEN", help="Act with this API token.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the --as account's password from standard input.")
    ] = False,
) -> None:
    try:
        settings = get_settings(data_dir=data_dir, database_url=database_url)
    except ValueError as exc:  # also pydantic's ValidationError: a bad setting in the environment or file
        err.print(f"[red]error:[/] bad configuration: {literal(exc)}", soft_wrap=True)
        raise typer.Exit(2) from None
    ctx.obj = Context(settings, as_user, token, password_stdin)
