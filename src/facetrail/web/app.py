"""The web app: a JSON API under /api/v1, the search page, and media by id.

The web layer is thin: it reads uploads within limits and calls search.Searcher.
"""

from __future__ import annotations

import base64
import getpass
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from .. import __version__
from ..config import Settings
from ..faces import load_engine
from ..index import open_index
from ..ingest.decode import DecodeError
from ..search import SearchRefused, Searcher
from ..search.bands import BANDS
from ..store import Database, Face, Image, Location
from ..store.media import MediaStore, make_crop

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Decoding problems with the uploaded photo -> HTTP status
STATUS = {"too_large": 413, "too_many_pixels": 413}


class Problem(HTTPException):
    """An error answered as {"detail": message, "code": code}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, message)
        self.code = code


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.db_url)
        app.state.db = db
        app.state.searcher = Searcher(settings, db, open_index(settings, db), load_engine(settings))
        app.state.media = MediaStore(settings.media_dir)
        yield
        db.close()

    app = FastAPI(
        title="facetrail",
        version=__version__,
        description="Accountable face search: every search needs a purpose and is written to the audit log.",
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    operator = getpass.getuser()

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    @app.exception_handler(Problem)
    async def problem_handler(_request: Request, exc: Problem) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "code": exc.code}, status_code=exc.status_code)

    async def read_upload(image: UploadFile) -> bytes:
        """The uploaded bytes, refusing more than the configured limit without reading it all."""
        limit = settings.upload_max_bytes
        data = await image.read(limit + 1)
        if len(data) > limit:
            raise Problem(413, "too_large", f"The photo is larger than the {limit // (1024 * 1024)} MB limit.")
        if not data:
            raise Problem(400, "empty", "The uploaded file is empty.")
        return data

    def searcher(request: Request) -> Searcher:
        return request.app.state.searcher

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request):
        bands = [(b.name, f"{b.max_distance:.2f}" if b.max_distance < 10 else "—") for b in BANDS]
        return templates.TemplateResponse(
            request, "search.html", {"bands": bands, "threshold": settings.match_threshold}
        )

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/api/v1/stats", tags=["service"])
    def stats(request: Request) -> dict:
        """How much is indexed."""
        index = searcher(request).index
        with request.app.state.db.session() as session:
            count = lambda model: session.scalar(select(func.count()).select_from(model))  # noqa: E731
            return {
                "images": count(Image),
                "faces": count(Face),
                "locations": count(Location),
                "sources": {
                    "files": session.scalar(
                        select(func.count()).select_from(Location).where(Location.image_id.is_not(None))
                    )
                },
                "index": {"kind": index.kind, "size": len(index)},
            }

    @app.post("/api/v1/faces", tags=["search"])
    async def faces(request: Request, image: Annotated[UploadFile, File(description="A photo")]) -> dict:
        """The faces in an uploaded photo, largest first, each with a small crop (data URL).

        This does not search the index and is not recorded; the photo is not kept."""
        data = await read_upload(image)
        try:
            decoded, found = searcher(request).faces_in(data)
        except DecodeError as exc:
            raise Problem(STATUS.get(exc.reason, 400), exc.reason, _explain(exc.reason, str(exc))) from None
        return {
            "width": decoded.width,
            "height": decoded.height,
            "faces": [
                {
                    "index": i,
                    "box": list(f.box),
                    "size": f.size,
                    "crop_url": "data:image/jpeg;base64,"
                    + base64.b64encode(make_crop(decoded.pixels, f.box, 96)).decode(),
                }
                for i, f in enumerate(found)
            ],
        }

    @app.post("/api/v1/search", tags=["search"])
    async def search(
        request: Request,
        image: Annotated[UploadFile, File(description="The query photo")],
        purpose: Annotated[str, Form(description="Why you are searching (required, recorded)")] = "",
        face: Annotated[int | None, Form(description="Which face of the photo; default the largest")] = None,
        top_k: Annotated[int | None, Form(ge=1, le=1000, description="Number of results")] = None,
        threshold: Annotated[float | None, Form(gt=0, le=2, description="Largest distance reported")] = None,
    ) -> dict:
        """Search for the person in the photo. The same result object as `facetrail search --json`,
        plus `crop_url` and `thumb_url` for each result. Every search is written to the audit log."""
        if not purpose.strip():
            raise Problem(422, "purpose_required", "A purpose is required: say why you are searching.")
        data = await read_upload(image)
        try:
            result = searcher(request).search(
                data,
                actor=operator,
                actor_kind="local_operator",
                purpose=purpose,
                face=face,
                top_k=top_k,
                threshold=threshold,
                name=image.filename,
            )
        except SearchRefused as exc:
            raise Problem(422, "refused", str(exc)) from None
        if result.error_code == "no_face":
            raise Problem(422, "no_face", "No face was found in this photo. Try a clearer, larger photo of the face.")
        if result.error_code == "no_such_face":
            raise Problem(422, "no_such_face", result.error)
        if result.error:
            raise Problem(STATUS.get(result.error_code, 400), result.error_code, _explain(result.error_code, result.error))
        body = result.to_dict()
        for item in body["results"]:
            item["crop_url"] = f"/media/faces/{item['face_id']}.jpg"
            item["thumb_url"] = f"/media/images/{item['image']['id']}.jpg"
        return body

    @app.get("/media/faces/{face_id}.jpg", include_in_schema=False)
    def face_crop(request: Request, face_id: int):
        with request.app.state.db.session() as session:
            row = session.execute(
                select(Image.sha256, Face.idx).join(Face, Face.image_id == Image.id).where(Face.id == face_id)
            ).first()
        return _media(row and request.app.state.media.crop_path(row.sha256, row.idx))

    @app.get("/media/images/{image_id}.jpg", include_in_schema=False)
    def thumbnail(request: Request, image_id: int):
        with request.app.state.db.session() as session:
            sha = session.scalar(select(Image.sha256).where(Image.id == image_id))
        return _media(sha and request.app.state.media.thumb_path(sha))

    return app


def _media(path: Path | None) -> FileResponse:
    if not path or not path.is_file():
        raise HTTPException(404, "not found")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


def _explain(code: str, detail: str) -> str:
    """A sentence for a person about why their photo could not be used."""
    messages = {
        "not_an_image": "This file is not an image. Upload a JPEG, PNG, WebP, GIF, BMP or TIFF photo.",
        "unsupported_format": "This image format is not supported. Use JPEG, PNG, WebP, GIF, BMP or TIFF.",
        "too_many_pixels": f"The photo has too many pixels ({detail}).",
        "too_large": f"The photo is too large ({detail}).",
        "truncated": "The photo is incomplete (truncated). Upload the whole file.",
        "corrupt": "The photo is damaged and cannot be read.",
        "empty": "The uploaded file is empty.",
    }
    return messages.get(code, detail)
