"""Sitemaps (sitemaps.org) read for a crawl: a `urlset` lists pages, a `sitemapindex` lists more
sitemap files; either may be gzip-compressed. Parsed as a stream by Scrapy's `Sitemap` (lxml
iterparse, no entity resolution), bounded in files, entries and inflated size."""

from __future__ import annotations

from lxml.etree import XMLSyntaxError
from scrapy.utils.gz import gunzip
from scrapy.utils.sitemap import Sitemap

# Sitemap files (robots.txt Sitemap: lines, /sitemap.xml, and the files sitemap indexes list) read at
# most by one crawl, and entries read at most from one file (the protocol's own limit).
MAX_SITEMAPS = 50
MAX_SITEMAP_ENTRIES = 50_000


def sitemap_entries(body: bytes, max_bytes: int) -> tuple[str, list[str]] | None:
    """(type, locations) of a sitemap file, at most MAX_SITEMAP_ENTRIES, pages newest `lastmod`
    first; None if it is not a sitemap. A gzip file is inflated up to `max_bytes`."""
    if body[:2] == b"\x1f\x8b":
        try:
            body = gunzip(body, max_size=max_bytes)
        except (OSError, EOFError, ValueError):  # corrupt, or over max_bytes (a bomb)
            return None
    try:
        sitemap = Sitemap(body)
        if sitemap.type not in ("urlset", "sitemapindex"):
            return None
        entries = [entry for entry, _ in zip(sitemap, range(MAX_SITEMAP_ENTRIES), strict=False)]
    except (XMLSyntaxError, StopIteration):
        return None
    if sitemap.type == "urlset":  # most recently modified first; no lastmod last
        entries.sort(key=lambda entry: str(entry.get("lastmod") or ""), reverse=True)
    return sitemap.type, [str(entry["loc"]) for entry in entries if entry.get("loc")]
