"""`facetrail serve`: the web app and JSON API."""

from __future__ import annotations

from typing import Annotated

import typer

from ..config import Settings
from .common import err, literal

commands = typer.Typer()


@commands.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Start the web app and JSON API."""
    import uvicorn

    from ..web import create_app

    settings: Settings = ctx.obj.settings
    err.print(f"facetrail: serving {literal(settings.data_dir.resolve())} on http://{host}:{port}/ (API docs at /docs)")
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1; the app
    # reads it itself, from FACETRAIL_TRUSTED_PROXIES only (web/deps.py: client_address, scheme).
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", proxy_headers=False)
