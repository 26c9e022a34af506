"""The web app (FastAPI): JSON API, search page, media."""

from .app import create_app

__all__ = ["create_app"]
