"""Imported by the forkserver that starts the analysis processes (ingest/pool.py), never
elsewhere: it imports the analysis code and loads the slow-to-build face models once, there, so
each analysis process forked from it starts with them in memory instead of building its own
(about 1 s of CPU each)."""

from ..faces.dlib_backend import preload
from . import analyze  # noqa: F401 - imported for the forked processes
from .pool import exit_with_parent

preload()
exit_with_parent()
