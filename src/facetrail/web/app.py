"""The web app: wiring only. Pages (pages.py), the JSON API (api.py), media by id (media.py);
who is calling and the shared parts in deps.py; refusals answered in errors.py.

The web layer is thin: it reads requests, calls the services (search, governance) and
turns their results into pages and JSON.
"""

from __future__ import annotations

import sys
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders

from .. import __version__
from ..config import Settings
from ..governance.checkpointer import Checkpointer
from ..governance.retention import maintenance as retention_maintenance
from ..faces.registry import in_use
from ..governance.settings_log import record_if_changed as record_settings
from ..index import follow_database
from ..search import Searcher
from ..store import Database
from ..store.media import MediaStore
from ..store.private import prepare_data_dir
from . import api, cases, docs, errors, evidence, media, pages, watches
from .cpu import CpuPool
from .deps import HERE
from .ratelimit import RateLimiter

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """SECURITY_HEADERS on every answer. Plain ASGI: `@app.middleware("http")` would add a task and
    a memory stream to every request, work done on the event loop (measured with bench/load.py)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        started = False

        async def send_with_headers(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        try:
            return await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            # Starlette answers an unhandled error outside every middleware, so without this its
            # 500 would leave without the headers: answer it here, then let it reach the log
            if not started:
                await (await errors.answer(Request(scope), exc))(scope, receive, send_with_headers)
            raise


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for warning in prepare_data_dir(settings.data_dir, settings.db_url):  # private: 0700/0600
            print(f"facetrail: warning: {warning}", file=sys.stderr)
        db = Database(settings.db_url)
        with db.session() as session, session.begin():
            record_settings(session, settings)
            retention_maintenance(session, settings)
        checkpointer = Checkpointer(settings, db)  # triggers checked, a checkpoint every few minutes
        for warning in checkpointer.start():
            print(f"facetrail: warning: {warning}", file=sys.stderr)
        app.state.db = db
        # training never blocks a search; the face model: face_model when set, else the stored faces'
        # (registry.in_use), followed after a switch (below)
        app.state.searcher = Searcher.open(in_use(settings, db), db, background=True)
        app.state.media = MediaStore(settings.media_dir)
        app.state.opt_out_limit = RateLimiter(settings.opt_out_per_hour, 3600)
        app.state.cpu = CpuPool.from_settings(settings)  # decode, detect, embed, index search: off the loop
        stop = threading.Event()

        def following():  # a model switch (facetrail reembed) first: that model's searcher, its index
            app.state.searcher = searcher = app.state.searcher.following()
            return searcher.index, searcher.engine.model_name

        follower = threading.Thread(target=follow_database, args=(following, db, stop),
                                    daemon=True, name="facetrail-index-follow")
        follower.start()  # faces stored by other processes (index, crawl, workers) become searchable
        yield
        app.state.cpu.close()
        stop.set()
        follower.join(timeout=5)
        checkpointer.stop()  # the last checkpoint, at shutdown
        db.close()

    app = FastAPI(
        title="facetrail",
        version=__version__,
        description="Accountable face search: every search needs a purpose and is written to the audit log.",
        lifespan=lifespan,
        responses=errors.RESPONSES,  # every error is {code, detail}
        docs_url=None,  # /docs is served from local assets by docs.py; no /redoc (it needs a CDN)
        redoc_url=None,
    )
    app.state.settings = settings

    app.add_middleware(SecurityHeaders)
    for handled in errors.HANDLED:
        app.add_exception_handler(handled, errors.answer)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (pages, api, media, docs, cases, evidence, watches):
        app.include_router(module.router)
    return app
