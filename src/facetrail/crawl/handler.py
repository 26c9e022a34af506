"""The Scrapy download handler of the crawler: every request (pages, images, robots.txt) goes through
facetrail's `SafeFetcher`, run in a worker thread, never through Scrapy's own HTTP clients.

Before fetching, the handler checks the URL against the crawl's scope (robots.txt by host only, as it
sits at the site root); after fetching it checks the final URL again, since `SafeFetcher` follows
redirects itself (vetting the address of every hop). Scope cannot be checked hop by hop: with
`max_redirects=0` SafeFetcher raises `too_many_redirects` instead of returning the 3xx response that
Scrapy's RedirectMiddleware would need, so an out-of-scope hop at an allowed address is requested
before its page is dropped. (robots.txt redirects are followed without a scope check, as RFC 9309
asks.) `FetchError`s surface as request failures
carrying the fetcher's reason; timeouts and connection failures become `TransientFetchError`, which
the crawl's RETRY_EXCEPTIONS setting retries, after an exponential back-off slept here.

robots.txt follows RFC 9309 section 2.3.1: a 5xx answer, no answer at all ("unreachable"), or an
answer that cannot be read completely and correctly (`robots.read_robots`: corrupt or truncated
compression, a decompression bomb, not UTF-8) means complete disallow, so the handler hands the robots
middleware a disallow-all file instead (Scrapy alone would allow everything), and reports the reason
as `robots_unreachable`. A readable robots.txt reaches the middleware decoded, without its
Content-Encoding (so Scrapy's compression middleware never touches it) and cut to the prefix that is
parsed; an unencoded robots.txt is only downloaded that far (`SafeFetcher.fetch(prefix=...)`). Page and
image fetches wait for the host's `Crawl-delay` floor (`robots.Pacer`).

The handler also holds each host to CONCURRENT_REQUESTS_PER_DOMAIN fetches at a time (`host_slots`):
Scrapy's downloader (2.19, without a reactor) counts a request as transferring only once its
coroutine runs, so at DOWNLOAD_DELAY 0 it starts every queued request of a host at once (6 at a time
against a configured 2, the size of the thread pool, in the test that found it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import weakref
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any, cast

from scrapy import Request
from scrapy.core.downloader.handlers.base import BaseDownloadHandler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Headers, Response
from scrapy.responsetypes import responsetypes
from scrapy.utils.httpobj import urlparse_cached

from .fetch import FetchError
from .render import Rules, renderer
from .robots import DISALLOW_ALL, MAX_PARSED, Unreadable, pacer, read_robots, robots_allows

if TYPE_CHECKING:
    from .spider import FacetrailSpider

TRANSIENT = frozenset({"timeout", "connect"})
MAX_BACKOFF = 60.0


class Skipped(IgnoreRequest):
    """A request refused by the crawl's own rules (`reason`: out_of_scope, excluded_domain...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TransientFetchError(FetchError):
    """A `FetchError` worth retrying (timeout, connection failure)."""


class SafeFetchHandler(BaseDownloadHandler):
    """DOWNLOAD_HANDLERS entry for http and https. `request.meta["image"]` asks for an image fetch."""

    lazy = False

    async def download_request(self, request: Request) -> Response:
        spider = cast("FacetrailSpider", self.crawler.spider)
        robots_txt = bool(request.meta.get("dont_obey_robotstxt"))  # set on Scrapy's robots.txt requests
        at_root = robots_txt or bool(request.meta.get("sitemap"))  # robots.txt and sitemaps: host only
        if why := spider.scope.refusal(request.url, check_prefix=not at_root):  # the spider checked too
            raise Skipped(why, f"{request.url} is outside the crawl's scope ({why})")
        if retries := request.meta.get("retry_times", 0):
            await asyncio.sleep(min(spider.retry_backoff * 2 ** (retries - 1), MAX_BACKOFF))
        async with host_slots(self.crawler, urlparse_cached(request).hostname or ""):
            if not robots_txt:
                await pacer(self.crawler).wait(urlparse_cached(request).netloc)
            if spider.deadline_reached:
                raise Skipped("deadline", f"{request.url} not fetched: the crawl reached its deadline")
            start = time.monotonic()
            try:
                fetched = await self._fetch(spider, request)
            finally:
                request.meta["download_latency"] = time.monotonic() - start  # AutoThrottle reads it
        if isinstance(fetched, Response):  # robots.txt could not be fetched: disallow all
            return fetched
        if spider.plan.on_capture is not None and not robots_txt:
            request.meta["fetched"] = fetched  # as sent, before any rendering: the spider captures it
        if spider.plan.render_js and _is_page(request, fetched):
            fetched = await self._rendered(spider, request, fetched)
        return self._answer(spider, request, fetched, robots_txt)

    async def _rendered(self, spider: FacetrailSpider, request: Request, fetched: Any) -> Any:
        """The page as the browser leaves it after its scripts ran (`render.py`), in place of its HTML."""
        rules = Rules(spider.scope, lambda url: robots_allows(self.crawler, url))
        user_agent = (request.headers.get("User-Agent") or b"").decode("latin-1")
        html = await renderer(self.crawler).render(fetched, spider.fetcher, rules, user_agent,
                                                   spider.fetcher.policy.deadline)
        headers = {k: v for k, v in fetched.headers.items() if k not in ("content-encoding", "content-length")}
        return dataclasses.replace(fetched, body=html.encode("utf-8"),
                                   headers={**headers, "content-type": "text/html; charset=utf-8"})

    async def close(self) -> None:
        await renderer(self.crawler).close()

    async def _fetch(self, spider: FacetrailSpider, request: Request) -> Any:
        robots_txt = bool(request.meta.get("dont_obey_robotstxt"))
        user_agent = (request.headers.get("User-Agent") or b"").decode("latin-1")
        try:
            return await asyncio.to_thread(spider.fetcher.fetch, request.url, image=bool(request.meta.get("image")),
                                           headers={**({"user-agent": user_agent} if user_agent else {}),
                                                    **request.meta.get("conditional", {})},
                                           prefix=MAX_PARSED + 1 if robots_txt else None)
        except FetchError as exc:
            if robots_txt:
                return _disallow_all(spider, request, f"{exc} ({exc.reason})")
            if exc.reason in TRANSIENT:
                raise TransientFetchError(exc.reason, str(exc)) from None
            raise

    def _answer(self, spider: FacetrailSpider, request: Request, fetched: Any, robots_txt: bool) -> Response:
        if robots_txt:
            try:
                text = read_robots(fetched.status, fetched.headers, fetched.body, spider.fetcher.policy.max_bytes)
            except Unreadable as exc:
                return _disallow_all(spider, request, str(exc))
            return Response(url=fetched.final_url, status=fetched.status, body=text, request=request,
                            headers={"Content-Type": "text/plain; charset=utf-8"})
        if why := spider.scope.refusal(fetched.final_url, check_prefix=not request.meta.get("sitemap")):
            raise Skipped(why, f"{request.url} redirected to {fetched.final_url}, outside the crawl's "
                          f"scope ({why})")
        headers = Headers(fetched.headers)
        kind = responsetypes.from_args(headers=headers, url=fetched.final_url, body=fetched.body)
        return kind(url=fetched.final_url, status=fetched.status, headers=headers, body=fetched.body,
                    request=request, ip_address=ip_address(fetched.address))


def _disallow_all(spider: FacetrailSpider, request: Request, why: str) -> Response:
    spider.skip(request.url, "robots_unreachable", f"robots.txt unreachable or unreadable ({why}): the "
                "whole host is treated as disallowed (RFC 9309)")
    return Response(url=request.url, status=200, body=DISALLOW_ALL, request=request)


def _is_page(request: Request, fetched: Any) -> bool:
    """A 2xx HTML answer to a page request (not an image, robots.txt or a sitemap)."""
    meta = request.meta
    if meta.get("image") or meta.get("sitemap") or meta.get("dont_obey_robotstxt"):
        return False
    return 200 <= fetched.status < 300 and "html" in fetched.headers.get("content-type", "").lower()


_SLOTS: weakref.WeakKeyDictionary[Any, dict[str, asyncio.Semaphore]] = weakref.WeakKeyDictionary()


def host_slots(crawler: Any, host: str) -> asyncio.Semaphore:
    """The crawl's semaphore for `host`: CONCURRENT_REQUESTS_PER_DOMAIN fetches at a time."""
    slots = _SLOTS.setdefault(crawler, {})
    if (slot := slots.get(host)) is None:
        slot = slots[host] = asyncio.Semaphore(crawler.settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN"))
    return slot
