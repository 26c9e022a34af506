"""Ingest: sources and feeds, the analysis pipeline, the work queue and its workers."""

from __future__ import annotations

from typing import Any

from .files import Item, Skip, walk

_LAZY = {"Ingestor": "pipeline", "PageRecord": "pipeline", "Summary": "pipeline"}


def __getattr__(name: str) -> Any:
    """The pipeline (the index, the database: a second to import) is imported when first used, so
    that a command can start the analysis processes (ingest/pool.py) before importing it."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Ingestor", "Item", "PageRecord", "Skip", "Summary", "walk"]
