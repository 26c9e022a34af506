"""Web sources as streams for the ingest pipeline: a crawl of a site, a URL list, web archives.

Each function returns a `Feed` yielding `Item`s (image bytes with their URL), `PageRecord`s (the
images a page shows) and `Skip`s (URLs not fetched, with the reason), produced in a thread while
the pipeline analyses faces. All network access goes through one `SafeFetcher` (no loopback,
private or link-local address unless FACETRAIL_FETCH_ALLOW lists its exact host:port).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, insert, select

from ..config import Settings
from ..crawl import CrawlSummary, ImageFound, Page, Scope, crawl, is_excluded
from ..crawl.scope import url_host
from ..crawl.extract import blocks_images, robots_directives
from ..store import Database, Location, Source
from ..store.models import FetchValidator
from .capture import CaptureWriter
from .feed import Feed
from ..crawl.fetch import FetchError, FetchPolicy, SafeFetcher, parse_allow
from .files import Item, Skip
from .pipeline import PageRecord
from .sources import site_scope

MAX_URL = 2048
_STATUS = re.compile(r"HTTP status (\d{3})")


def fetcher(settings: Settings) -> SafeFetcher:
    return SafeFetcher(FetchPolicy(allow=parse_allow(settings.fetch_allow), max_bytes=settings.fetch_max_bytes,
                                   deadline=settings.fetch_timeout, user_agent=settings.user_agent))


def skip(url: str, reason: str, message: str) -> Skip:
    found = _STATUS.search(message) if reason == "http_status" else None
    return Skip(url, reason, message, int(found.group(1)) if found else None)


def page_record(page: Page) -> PageRecord:
    return PageRecord(page.final_url, page.canonical_url, page.title, page.status,
                      tuple((ref.url, ref.alt) for ref in page.images if len(ref.url) <= MAX_URL))


def image_item(image: ImageFound) -> Item:
    return Item(image.url, len(image.body), data=image.body, status=image.status)


def _unfinished_since(marker: Path) -> datetime | None:
    """When the crawl that left `marker` behind (it was interrupted) started."""
    try:
        return datetime.fromisoformat(json.loads(marker.read_text())["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


Validators = dict[str, tuple[str | None, str | None]]


def _stored_validators(db: Database, source: Source) -> tuple[Validators, dict[str, int]]:
    """(ETag, Last-Modified) of the source's image URLs whose bytes are stored, and their sizes."""
    with db.session() as session:
        rows = session.execute(
            select(FetchValidator.url, FetchValidator.etag, FetchValidator.last_modified, Location.size)
            .join(Location, (Location.source_id == FetchValidator.source_id) & (Location.location == FetchValidator.url))
            .where(FetchValidator.source_id == source.id, Location.image_id.is_not(None))).all()
    return {row.url: (row.etag, row.last_modified) for row in rows}, {row.url: row.size for row in rows}


def _save_validators(db: Database, source: Source, found: Validators) -> None:
    """Keep the validators the crawl's answers carried, for the next crawl."""
    if not found:
        return
    now = datetime.now(UTC)
    rows = {hashlib.sha256(url.encode()).hexdigest(): (url, etag, modified) for url, (etag, modified) in found.items()}
    keys = list(rows)
    with db.session() as session, session.begin():
        for at in range(0, len(keys), 500):
            session.execute(delete(FetchValidator).where(FetchValidator.source_id == source.id,
                                                         FetchValidator.key.in_(keys[at:at + 500])))
        session.execute(insert(FetchValidator), [
            dict(source_id=source.id, key=key, url=url, etag=etag, last_modified=modified, updated_at=now)
            for key, (url, etag, modified) in rows.items()])


def crawl_feed(settings: Settings, db: Database, source: Source, max_pages: int | None = None,
               max_depth: int | None = None) -> Feed[CrawlSummary]:
    """Crawl a site source within its scope (see `facetrail.crawl.crawl` for the rules).

    A crawl leaves a marker in the data folder until what it fetched is stored (`Feed.stored`,
    called by the caller after the ingest); the next crawl after an interruption, even one
    after the fetching ended, resumes it: the images the interrupted crawl stored are not
    fetched again.
    Images stored by earlier crawls are asked for conditionally (their ETag / Last-Modified): an
    unchanged one is not downloaded, only seen again (first/last seen updated).
    The answers of the pages and images reported are kept in the source's WARC files (capture.py)."""
    scope = site_scope(source)
    options = source.options or {}
    pages = max_pages or options.get("max_pages") or settings.crawl_max_pages
    depth = max_depth if max_depth is not None else options.get("max_depth", settings.crawl_max_depth)
    marker = settings.data_dir / "crawls" / f"{source.name}.json"

    def produce(put: Callable[[object], None]) -> CrawlSummary:
        started = _unfinished_since(marker)
        fetched: frozenset[str] = frozenset()
        if started is not None:
            with db.session() as session:
                fetched = frozenset(session.scalars(select(Location.location).where(
                    Location.source_id == source.id, Location.last_seen >= started)))
        else:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({"started": datetime.now(UTC).isoformat()}))
        validators, sizes = _stored_validators(db, source)
        answered: Validators = {}

        def on_image(image: ImageFound) -> None:
            if image.status == 304:  # unchanged: the pipeline settles it as a file seen again
                put(Item(image.url, sizes[image.url]))
                return
            if image.etag or image.last_modified:
                answered[image.url] = (image.etag, image.last_modified)
            put(image_item(image))

        capture = CaptureWriter(settings, source)
        try:
            summary = crawl(source.scope["start_urls"], scope, fetcher(settings), max_pages=pages, max_depth=depth,
                            user_agent=settings.user_agent, delay=settings.crawl_delay, fetched=fetched,
                            max_images_per_page=settings.crawl_max_images_per_page,
                            max_images=settings.crawl_max_images, max_seconds=settings.crawl_max_seconds,
                            on_page=lambda page: put(page_record(page)),
                            on_image=on_image, validators=validators, render_js=bool(options.get("render_js")),
                            on_error=lambda url, reason, message: put(skip(url, reason, message)),
                            on_capture=capture.fetched if capture.enabled else None)
        finally:
            capture.close()
            _save_validators(db, source, answered)
        return summary

    return Feed(produce, on_stored=lambda: marker.unlink(missing_ok=True))  # the next crawl starts afresh


def read_url_list(path: Path) -> list[str]:
    """The URLs of a list file: one per line; blank lines and lines starting with # are ignored."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
    return list(dict.fromkeys(line for line in lines if line and not line.startswith("#")))


def url_refusal(url: str, scope: Scope | None) -> str | None:
    """Why an image URL of a list may not be fetched, before any network access."""
    if len(url) > MAX_URL:
        return "bad_url"
    if scope is not None:
        return scope.refusal(url)
    host = url_host(url)
    if host is None:
        return "bad_url"
    return "excluded_domain" if is_excluded(host) else None


def urls_feed(settings: Settings, source: Source, urls: Iterable[str]) -> Feed[int]:
    """Fetch each image URL once, in order, waiting `crawl_delay` between requests to a host (or the
    host's robots.txt Crawl-delay, if longer). robots.txt is obeyed as by the crawler (an unreadable
    one disallows the host), unless the source was declared with `ignore_robots` (a recorded reason).
    An image whose X-Robots-Tag forbids indexing (noimageindex, noai...) is skipped. The answers of
    the images reported are kept in the source's WARC files (capture.py)."""
    from ..crawl.robots import RobotsCache

    scope = site_scope(source)
    safe = fetcher(settings)
    ignore_robots = str((source.options or {}).get("ignore_robots") or "").strip()
    robots = None if ignore_robots else RobotsCache(safe, settings.user_agent)

    def produce(put: Callable[[object], None]) -> int:
        with CaptureWriter(settings, source) as capture:
            return fetch_all(put, capture)

    def fetch_all(put: Callable[[object], None], capture: CaptureWriter) -> int:
        last: dict[str, float] = {}
        fetched = 0
        for url in urls:
            refusal = url_refusal(url, scope)
            if refusal:
                put(Skip(url, refusal, f"{url}: not fetched ({refusal.replace('_', ' ')})"))
                continue
            host = url_host(url)
            delay = settings.crawl_delay
            if robots is not None:
                rules, first = robots.rules(url)
                if rules.refused is not None:  # the image could not be fetched either
                    put(skip(url, rules.refused.reason, str(rules.refused)))
                    continue
                if first and rules.unreadable:
                    put(Skip(url, "robots_unreachable", rules.unreadable))
                if not rules.rules.allowed(url, ""):
                    put(Skip(url, "robots", f"{url} is disallowed by robots.txt"))
                    continue
                delay = max(delay, rules.delay)
            wait = last.get(host, 0) + delay - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            last[host] = time.monotonic()
            try:
                response = safe.fetch(url, image=True)
            except FetchError as exc:
                put(skip(url, exc.reason, str(exc)))
                continue
            if blocks_images(robots_directives(response.headers.get("x-robots-tag", ""))):
                put(Skip(url, "noimageindex", f"{url}: X-Robots-Tag forbids indexing this image"))
                continue
            if scope is not None and not scope.allows(response.final_url):
                put(Skip(url, "out_of_scope", f"{url}: redirected out of scope to {response.final_url}"))
                continue
            fetched += 1
            capture.fetched(response)
            put(Item(url, len(response.body), data=response.body, status=response.status))
        return fetched

    return Feed(produce)


def warc_feed(settings: Settings, source: Source, paths: Iterable[Path]) -> Feed[int]:
    """Read web archives: archived HTML pages give appearances (dated by capture), archived image
    responses give images; robots directives, the excluded domains and the source's hosts apply.
    The records used are copied into the source's WARC files (capture.py)."""
    from .warc import ArchivedPage, read_warc

    scope = site_scope(source)

    def produce(put: Callable[[object], None]) -> int:
        with CaptureWriter(settings, source) as capture:
            return read_all(put, capture)

    def read_all(put: Callable[[object], None], capture: CaptureWriter) -> int:
        records = 0
        for path in paths:
            for record in read_warc(path, max_bytes=settings.fetch_max_bytes, scope=scope,
                                    on_error=lambda url, reason, message: put(skip(url, reason, message))):
                records += 1
                if record.record_length and (isinstance(record, ArchivedPage) or len(record.url) <= MAX_URL):
                    capture.copy(path, record.record_offset, record.record_length)
                if isinstance(record, ArchivedPage):
                    put(PageRecord(record.url, record.canonical_url, record.title, record.status,
                                   tuple((ref.url, ref.alt) for ref in record.images if len(ref.url) <= MAX_URL),
                                   seen=record.captured_at))
                elif len(record.url) <= MAX_URL:
                    put(Item(record.url, len(record.body), data=record.body, status=record.status,
                             seen=record.captured_at))
        return records

    return Feed(produce)
