"""Crawling of declared `site` sources: scoped, polite, robots-aware (Scrapy over `SafeFetcher`).

    scope = Scope(frozenset({"example.org"}), ("https://example.org/team/",))
    summary = crawl(["https://example.org/team/"], scope, SafeFetcher(FetchPolicy()),
                    on_page=..., on_image=..., on_error=...)
"""

from .crawler import DEFAULT_USER_AGENT, CrawlSummary, crawl
from .extract import ImageRef, Page, extract
from .scope import Scope, excluded_domains, is_excluded
from .spider import ImageFound

__all__ = ["DEFAULT_USER_AGENT", "CrawlSummary", "ImageFound", "ImageRef", "Page", "Scope", "crawl",
           "excluded_domains", "extract", "is_excluded"]
