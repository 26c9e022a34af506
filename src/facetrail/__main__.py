"""`python -m facetrail ...` runs the command line."""

from .cli import app

app()
