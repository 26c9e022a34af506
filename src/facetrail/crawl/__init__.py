"""Crawling of declared `site` sources: scoped, polite, robots-aware (Scrapy over `SafeFetcher`).

    scope = Scope(frozenset({"example.org"}), ("https://example.org/team/",))
    summary = crawl(["https://example.org/team/"], scope, SafeFetcher(FetchPolicy()),
                    on_page=..., on_image=..., on_error=...)
"""

from __future__ import annotations

from typing import Any

from .extract import ImageRef, Page, extract
from .scope import Scope, excluded_domains, is_excluded

_LAZY = {"DEFAULT_USER_AGENT": "crawler", "CrawlSummary": "crawler", "crawl": "crawler", "ImageFound": "spider"}


def __getattr__(name: str) -> Any:
    """The crawler itself is imported when first used: Scrapy takes ~0.4 s to import, and most
    commands (folder ingest, search, the web app) only need scopes."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["DEFAULT_USER_AGENT", "CrawlSummary", "ImageFound", "ImageRef", "Page", "Scope", "crawl",
           "excluded_domains", "extract", "is_excluded"]
