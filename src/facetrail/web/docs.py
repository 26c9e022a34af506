"""The interactive API documentation at /docs: Swagger UI 5 from the `swagger-ui-py` package,
served from this server (no CDN: facetrail often runs offline) and started by an external
script (static/swagger-init.js), so the page works under the app's Content-Security-Policy,
which forbids inline scripts. ReDoc is not served (FastAPI's /redoc page needs a CDN too)."""

from __future__ import annotations

from html import escape
from pathlib import Path

import swagger_ui
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from ..errors import Refused

ASSETS = Path(swagger_ui.__file__).parent / "static"  # Swagger UI 5: OpenAPI 3.1, as FastAPI writes
SERVED = {  # the files the page needs, and nothing else from the package folder
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    title = escape(f"{request.app.title} {request.app.version}: API")
    openapi = escape(request.app.openapi_url or "/openapi.json")
    return HTMLResponse(f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/static/swagger-init.js"></script>
</body>
</html>
""")


@router.get("/docs/assets/{name}")
def asset(name: str) -> FileResponse:
    if name not in SERVED:
        raise Refused("No such file.", "not_found")
    return FileResponse(ASSETS / name, media_type=SERVED[name], headers={"Cache-Control": "public, max-age=86400"})
