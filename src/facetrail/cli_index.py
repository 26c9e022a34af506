"""Kept for `import facetrail.cli_index` in tests/test_index_selection.py: `index-status` now lives
in `facetrail.cli.index` and is registered with the app."""

from .cli import index  # noqa: F401
