"""`crawl()`: one polite, scoped crawl of a declared site, run by Scrapy in-process.

Scrapy runs in its reactorless mode (TWISTED_REACTOR_ENABLED=False, Scrapy >= 2.15): the engine runs
on a plain asyncio event loop, which `asyncio.run` creates and closes per crawl, in a thread of its
own. Nothing process-wide is installed (no Twisted reactor, which could never be restarted, no
signal handlers, no logging handlers), so `crawl()` can be called any number of times per process,
from any thread, even one running an event loop (which it blocks). Crawls run one at a time (a
lock), since Scrapy's process-wide state is not meant for concurrent crawlers on separate loops.

All network access goes through the given `SafeFetcher` (see `handler.py`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scrapy.crawler import AsyncCrawlerRunner

from .extract import Page
from .fetch import Response as Fetched
from .fetch import SafeFetcher
from .handler import SafeFetchHandler, TransientFetchError
from .robots import RobotsMiddleware, RobotsRules, product_token
from .scope import Scope
from .spider import MAX_IMAGES_PER_CRAWL, MAX_IMAGES_PER_PAGE, FacetrailSpider, ImageFound, Plan

DEFAULT_USER_AGENT = "facetrail/0.1 (+https://github.com/facetrail/facetrail; declared-source crawler)"
_LOCK = threading.Lock()
_HANDLER = f"{SafeFetchHandler.__module__}.{SafeFetchHandler.__qualname__}"
_ROBOTS = f"{RobotsMiddleware.__module__}.{RobotsMiddleware.__qualname__}"
_RULES = f"{RobotsRules.__module__}.{RobotsRules.__qualname__}"


@dataclass(frozen=True)
class CrawlSummary:
    """What a crawl did. `skipped` counts URLs by reason (see `crawl`)."""

    pages: int  # HTML pages fetched and reported to on_page
    images: int  # images fetched and reported to on_image
    skipped: dict[str, int]
    limit_reached: bool  # max_pages stopped the crawl from requesting more pages
    budget_reached: bool  # max_images stopped the crawl from requesting more images
    deadline_reached: bool  # max_seconds stopped the crawl
    resumed: int  # images not fetched again because `fetched` held them
    not_modified: int  # images answered 304 Not Modified to a conditional request (`validators`)
    seconds: float


def _ignore(*_: Any) -> None:
    return None


def crawl(start_urls: Iterable[str], scope: Scope, fetcher: SafeFetcher, *, max_pages: int = 100,
          max_depth: int = 3, user_agent: str = DEFAULT_USER_AGENT, delay: float = 1.0,
          concurrency: int = 2, retries: int = 2, retry_backoff: float = 1.0,
          on_page: Callable[[Page], None] = _ignore, on_image: Callable[[ImageFound], None] = _ignore,
          on_error: Callable[[str, str, str], None] = _ignore,
          fetched: frozenset[str] = frozenset(),
          max_images_per_page: int = MAX_IMAGES_PER_PAGE, max_images: int = MAX_IMAGES_PER_CRAWL,
          max_seconds: float = 3600.0, sitemaps: bool = True,
          validators: Mapping[str, tuple[str | None, str | None]] | None = None,
          render_js: bool = False, on_capture: Callable[[Fetched], None] | None = None) -> CrawlSummary:
    """Crawl `scope` from `start_urls`; blocks until done and returns a summary.

    * Links are followed breadth first up to `max_depth` links away from a start URL, and at most
      `max_pages` pages are requested, each URL at most once. Only in-scope URLs are requested; but
      SafeFetcher follows redirects itself (vetting each hop's address, not its scope), so a page or
      image whose redirects lead outside the scope has been requested there, and is then dropped.
    * robots.txt is obeyed (RFC 9309, with Protego, for pages and images alike; see `robots.py`): the
      groups naming the product token of `user_agent` (`facetrail` in `facetrail/0.1 (+https://...)`;
      `User-agent: FaceTrail/0.1` names it too) or else `*`; at most its first 500 KiB are parsed; a
      robots.txt that cannot be fetched or read completely and correctly (5xx, timeout, corrupt or
      truncated compression, a decompression bomb, not UTF-8) disallows the whole host; its
      `Crawl-delay` is a floor on the time between two fetches from the host (over 60 s, the host is
      left alone). `<meta name=robots>` and X-Robots-Tag are obeyed too: noindex,
      noimageindex, noai or noimageai on a page hides all its images, on an image skips it; nofollow
      on a page stops its links from being followed.
    * `delay` seconds between requests to a host (randomised 0.5-1.5x, raised by AutoThrottle when a
      host slows down), at most `concurrency` requests at a time per host; timeouts, connection
      failures and 5xx/429 answers are retried `retries` times, `retry_backoff` x 2^n seconds apart.
    * `on_page(Page)` for every HTML page fetched (its `images` lists every image appearance on it,
      empty when robots directives forbid indexing them); `on_image(ImageFound)` once per image URL
      fetched, with its bytes; `on_error(url, reason, message)` for every URL not fetched or not
      indexed. Reasons: out_of_scope, excluded_domain, robots, robots_unreachable, noimageindex,
      not_html, http_status, and the `FetchError` reasons (refused_address, timeout, too_large,
      not_an_image, connect, dns...). Callbacks run on the crawl's thread; the first exception one
      raises stops the crawl and is raised here.
    * At most `max_images_per_page` images of a page are listed and fetched (the first ones); the
      page is then also reported as too_many_images. At most `max_images` images are requested by
      the whole crawl: a page met after that lists only the images requested before (reported as
      image_budget). A page is read as a stream (see `extract`), so its size costs no memory beyond
      its text and the images and links kept.
    * With `sitemaps`, `/sitemap.xml` of each start URL's origin and the `Sitemap:` lines of every
      robots.txt read are start points too (within the scope's hosts; index files and gzip files
      read; at most 50 files of 50,000 entries each): their pages, the most recently modified
      (`lastmod`) first, count as start URLs (depth 0) and against `max_pages`. A missing or
      disallowed /sitemap.xml is not reported; a declared one that is no sitemap is (not_a_sitemap).
    * An image URL in `validators` (its ETag and Last-Modified when it was stored) is asked for
      conditionally (If-None-Match / If-Modified-Since): a 304 answer is reported to on_image with
      status 304 and no body (counted in `not_modified`, not in `images`). Each image reported
      carries the validators of its answer.
    * With `render_js`, each HTML page is rendered by Chromium (Playwright) and the DOM its scripts
      built is read instead of its HTML; every request the browser makes goes through the same
      fetcher, scope and robots.txt rules or is refused (see `render.py`).
    * `on_capture(fetch.Response)` (if given) for every page reported to on_page and every image
      reported to on_image (not 304s), just before that call: the answer as the fetcher received it
      (the HTML as served, not as rendered), with every hop's exchange, for archiving
      (`facetrail.ingest.capture`); an image's `url` is the one `ImageFound.url` has (as found).
    * The crawl stops after `max_seconds`: the URLs waiting for their host are reported as deadline,
      those not handed to the downloader yet are dropped; fetches under way end (within the
      fetcher's own deadline) and are reported as usual.
    * Image URLs in `fetched` are not fetched again (resuming an interrupted crawl); pages showing
      them still list them.

    `user_agent` must hold a contact URL. The fetcher's policy sets the per-fetch deadline, size
    limit, redirect limit and the loopback/private addresses allowed.
    """
    if "http://" not in user_agent and "https://" not in user_agent:
        raise ValueError("the user agent must include a contact URL (http:// or https://)")
    product_token(user_agent)  # robots.txt groups are matched on it: raises ValueError if there is none
    if (max_pages < 1 or max_depth < 0 or delay < 0 or concurrency < 1 or retries < 0 or retry_backoff < 0
            or max_images_per_page < 0 or max_images < 0 or max_seconds <= 0):
        raise ValueError("max_pages and concurrency must be >= 1, the other limits >= 0")
    plan = Plan(tuple(start_urls), scope, fetcher, max_pages, max_depth, retry_backoff,
                on_page, on_image, on_error, frozenset(fetched), max_images_per_page, max_images,
                max_seconds, sitemaps, dict(validators or {}), render_js, on_capture)
    settings = {
        "TWISTED_REACTOR_ENABLED": False,
        "DOWNLOAD_HANDLERS": {"http": _HANDLER, "https": _HANDLER,
                              "data": None, "file": None, "s3": None, "ftp": None},
        "USER_AGENT": user_agent,
        "ROBOTSTXT_OBEY": True,
        "ROBOTSTXT_USER_AGENT": product_token(user_agent),
        "ROBOTSTXT_PARSER": _RULES,
        "DOWNLOAD_DELAY": delay,
        "AUTOTHROTTLE_ENABLED": delay > 0,  # with no delay asked for (a test or local site), full speed
        "AUTOTHROTTLE_START_DELAY": delay,
        "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "RETRY_TIMES": retries,
        "RETRY_EXCEPTIONS": [TransientFetchError],
        "RETRY_GIVE_UP_LOG_LEVEL": "INFO",  # on_error reports it
        "DOWNLOAD_TIMEOUT": fetcher.policy.deadline,  # informative: the fetcher enforces its deadline
        "DOWNLOAD_MAXSIZE": fetcher.policy.max_bytes,  # also bounds Scrapy's decompression
        "DEPTH_LIMIT": 0,  # depth is limited by the spider, so that images of the deepest pages are fetched
        "DEPTH_PRIORITY": 1,  # breadth first
        "SCHEDULER_MEMORY_QUEUE": "scrapy.squeues.FifoMemoryQueue",
        "SCHEDULER_DISK_QUEUE": "scrapy.squeues.PickleFifoDiskQueue",
        "REDIRECT_ENABLED": False,  # SafeFetcher follows redirects
        "METAREFRESH_ENABLED": False,
        "COOKIES_ENABLED": False,
        "DOWNLOADER_MIDDLEWARES": {"scrapy.downloadermiddlewares.cookies.CookiesMiddleware": None,
                                   "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
                                   _ROBOTS: 100},  # Scrapy's place for it: before everything else
        "REFERER_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "REMOTE_CONTROL_ENABLED": False,  # Scrapy 2.19 would otherwise open a code-running HTTP server
        "HTTPPROXY_ENABLED": False,  # SafeFetcher connects directly
    }
    started = time.monotonic()
    spiders: list[FacetrailSpider] = []

    async def run() -> None:
        runner = AsyncCrawlerRunner(settings)
        crawler = runner.create_crawler(FacetrailSpider)
        await runner.crawl(crawler, plan=plan)
        spiders.append(crawler.spider)

    errors: list[BaseException] = []

    def thread() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            errors.append(exc)

    with _LOCK:
        worker = threading.Thread(target=thread, name="facetrail-crawl")
        worker.start()
        worker.join()
    if errors:
        raise errors[0]
    spider = spiders[0]
    if spider.failure is not None:
        raise spider.failure
    return CrawlSummary(pages=spider.pages, images=spider.images, skipped=dict(spider.skipped),
                        limit_reached=spider.limit_reached, budget_reached=spider.budget_reached,
                        deadline_reached=spider.deadline_reached,
                        resumed=spider.resumed, not_modified=spider.not_modified, seconds=time.monotonic() - started)
