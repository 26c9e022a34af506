"""The Scrapy spider of a crawl: follows in-scope links breadth first, fetches each image once, and
turns every response and failure into `Page`, `ImageFound` and skip reports."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from scrapy import Request, Spider, signals
from scrapy.exceptions import DontCloseSpider, IgnoreRequest
from scrapy.http import HtmlResponse, Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from .extract import ImageRef, Page, blocks_images, extract, robots_directives
from .fetch import FetchError, SafeFetcher
from .fetch import Response as Fetched
from .handler import Skipped
from .scope import Scope
from .sitemaps import MAX_SITEMAPS, sitemap_entries

IMAGE_PRIORITY = 10  # images of a page are fetched before the crawl goes deeper
# Images of one page indexed at most: real pages, galleries included, show far fewer; a page listing
# more (a trap, a generated page) would otherwise queue a request per image.
MAX_IMAGES_PER_PAGE = 500
# Images fetched at most by one crawl (new ones: images already requested are shown again for free).
MAX_IMAGES_PER_CRAWL = 20_000
# Links of one page followed at most (or the crawl's page limit, if higher): a page listing more is a
# trap or a generated index; its further links are reachable from other pages.
MAX_LINKS_PER_PAGE = 10_000
# Image requests handed to Scrapy at a time; the others wait as plain (image, page) pairs and become
# requests as these finish, so a crawl's queue holds this many requests, not every image found.
MAX_IMAGE_REQUESTS = 64


@dataclass(frozen=True)
class ImageFound:
    """A fetched image: its bytes (not decoded here) and the first page it was found on.

    Every appearance of the image, on any page, is in that page's `Page.images`.
    """

    url: str  # as found on the page
    final_url: str  # after redirects
    page_url: str
    alt: str
    canonical_url: str | None  # of the page
    page_title: str
    status: int  # 304: not modified since the validators the crawl was given (body empty)
    body: bytes
    content_type: str
    etag: str | None = None  # validators of this answer, for the next crawl
    last_modified: str | None = None


@dataclass(frozen=True)
class Plan:
    """What a crawl is asked to do (see `facetrail.crawl.crawl`)."""

    start_urls: tuple[str, ...]
    scope: Scope
    fetcher: SafeFetcher
    max_pages: int
    max_depth: int
    retry_backoff: float
    on_page: Callable[[Page], None]
    on_image: Callable[[ImageFound], None]
    on_error: Callable[[str, str, str], None]
    fetched: frozenset[str] = frozenset()  # image URLs fetched already (resuming an interrupted crawl)
    max_images_per_page: int = MAX_IMAGES_PER_PAGE  # the first ones, in the order extract() lists them
    max_images: int = MAX_IMAGES_PER_CRAWL  # image requests of the whole crawl
    max_seconds: float = 3600.0  # the crawl's deadline
    sitemaps: bool = True  # read /sitemap.xml and robots.txt's Sitemap: lines
    # image URL -> (ETag, Last-Modified) of the answer stored before: asked for conditionally
    validators: Mapping[str, tuple[str | None, str | None]] = dataclasses.field(default_factory=dict)
    render_js: bool = False  # pages rendered by a browser (render.py)
    # every page and image answer reported to on_page / on_image, as the fetcher received it (capture)
    on_capture: Callable[[Fetched], None] | None = None


class FacetrailSpider(Spider):
    """Crawls `plan`; `pages`, `images`, `skipped` and `limit_reached` summarise it afterwards.

    `failure` holds the first exception a callback raised (the crawl then stops).
    """

    name = "facetrail"

    def __init__(self, plan: Plan, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.scope, self.fetcher, self.retry_backoff = plan.scope, plan.fetcher, plan.retry_backoff
        # Every page and image URL requested or refused, so that each is handled once as a page and
        # once as an image. Requests bypass Scrapy's duplicate filter (dont_filter), which knows no
        # kinds: an extension-less image URL that a link reached first was fetched as a page
        # (not_html) and its image request then dropped, leaving an appearance with no image.
        self.seen: dict[str, set[str]] = {"page": set(), "image": set(), "sitemap": set()}
        self.page_requests = 0
        self.image_requests = 0
        self.budget_reached = False  # max_images stopped the crawl from requesting more images
        self.deadline_reached = False
        self.pages = 0
        self.images = 0
        self.skipped: Counter[str] = Counter()
        self.limit_reached = False
        self.resumed = 0  # images not fetched again: an interrupted crawl fetched them
        self.backlog: deque[tuple[ImageRef, Page]] = deque()  # admitted images not yet requested
        self.images_out = 0  # image requests handed to Scrapy and not finished
        self.not_modified = 0  # images answered 304 Not Modified
        self.failure: Exception | None = None
        self._closing: asyncio.Task[None] | None = None  # a reference keeps the task alive

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> FacetrailSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider._robots_parsed, signal=signals.robots_parsed)
        crawler.signals.connect(spider._idle, signal=signals.spider_idle)
        return spider

    async def start(self) -> AsyncIterator[Request]:
        self._deadline = asyncio.get_running_loop().call_later(self.plan.max_seconds, self._stop_at_deadline)
        for url in self.plan.start_urls:
            if request := self._page_request(url):
                yield request
        for origin in dict.fromkeys(_origin(url) for url in self.plan.start_urls if self.plan.sitemaps):
            if request := self._sitemap_request(f"{origin}/sitemap.xml", guessed=True):
                yield request

    def _stop_at_deadline(self) -> None:
        """The crawl's time is up: nothing more is fetched (the handler refuses what is queued)."""
        self.deadline_reached = True
        self._closing = asyncio.get_running_loop().create_task(
            self.crawler.engine.close_spider_async(reason="deadline"))

    def skip(self, url: str, reason: str, message: str) -> None:
        """Count and report a URL not fetched or not indexed."""
        self.skipped[reason] += 1
        self._call(self.plan.on_error, url, reason, message)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        """Run a caller's callback; the first exception is kept and stops the crawl."""
        if self.failure is not None:
            return
        try:
            callback(*args)
        except Exception as exc:  # noqa: BLE001 - handed back to the caller of crawl()
            self.failure = exc
            self._closing = asyncio.get_running_loop().create_task(
                self.crawler.engine.close_spider_async(reason="callback_failed"))

    def _capture(self, response: Response) -> None:
        """Hand the answer as the fetcher received it (before any rendering) to `on_capture`."""
        fetched = response.meta.pop("fetched", None)
        if self.plan.on_capture is not None and fetched is not None:
            if (ref := response.meta.get("ref")) is not None:  # an image: its URL as the page gave it
                fetched = dataclasses.replace(fetched, url=ref.url)  # (Scrapy's request escaped it)
            self._call(self.plan.on_capture, fetched)

    def _admit(self, url: str, kind: str) -> bool:
        """True the first time `url` is met as a `kind` ("page", "image") if in scope; else reports it.

        Always False once a callback failed: the crawl is stopping.
        """
        if url in self.seen[kind] or self.failure is not None:
            return False
        self.seen[kind].add(url)
        if why := self.scope.refusal(url):
            where = "on an excluded domain" if why == "excluded_domain" else "outside the crawl's scope"
            self.skip(url, why, f"{url} is {where}")
            return False
        return True

    def _page_request(self, url: str) -> Request | None:
        url = urldefrag(url).url
        if not self._admit(url, "page"):
            return None
        if self.page_requests >= self.plan.max_pages:
            self.limit_reached = True
            return None
        self.page_requests += 1
        return Request(url, callback=self.parse_page, errback=self.failed, dont_filter=True)

    def parse_page(self, response: Response) -> Iterator[Request]:
        request = response.request
        assert request is not None
        if not isinstance(response, HtmlResponse):
            self.skip(request.url, "not_html", f"{request.url} is not an HTML page "
                      f"({response.headers.get('Content-Type', b'no Content-Type').decode('latin-1')})")
            return
        if response.url != request.url and response.url in self.seen["page"]:
            return  # reached again through another redirect
        self.seen["page"].add(response.url)
        header = b", ".join(response.headers.getlist("X-Robots-Tag")).decode("latin-1")
        page = extract(response.text, url=request.url, final_url=response.url, status=response.status,
                       x_robots_tag=header, max_images=self.plan.max_images_per_page,
                       max_links=max(MAX_LINKS_PER_PAGE, self.plan.max_pages))
        if page.images and blocks_images(page.robots):
            self.skip(page.final_url, "noimageindex", f"{len(page.images)} image(s) not indexed: the page "
                      f"says {', '.join(sorted(page.robots))}")
            page = dataclasses.replace(page, images=[])
        elif page.more_images:
            self.skip(page.final_url, "too_many_images", f"only the first {self.plan.max_images_per_page} "
                      f"images of {page.final_url} are indexed: the page shows more")
        shown, wanted = self._budget(page.images)
        if len(shown) < len(page.images):
            self.budget_reached = True
            self.skip(page.final_url, "image_budget", f"{len(page.images) - len(shown)} image(s) of "
                      f"{page.final_url} not indexed: the crawl has requested its {self.plan.max_images} images")
            page = dataclasses.replace(page, images=shown)
        self.pages += 1
        self._capture(response)
        self._call(self.plan.on_page, page)
        self.backlog.extend((ref, page) for ref in wanted)
        yield from self._release()
        if response.meta["depth"] < self.plan.max_depth:
            for link in page.links:
                if next_request := self._page_request(link):
                    yield next_request

    def _budget(self, refs: list[ImageRef]) -> tuple[list[ImageRef], list[ImageRef]]:
        """(the images of a page to show, the ones to request): a new image beyond the crawl's image
        budget is neither; one met before (requested, refused, or stored by an interrupted crawl) is
        shown and not requested again."""
        shown, wanted = [], []
        for ref in refs:
            if ref.url in self.plan.fetched:
                if ref.url not in self.seen["image"]:
                    self.seen["image"].add(ref.url)
                    self.resumed += 1
            elif ref.url not in self.seen["image"]:
                if self.image_requests >= self.plan.max_images:
                    continue
                if self._admit(ref.url, "image"):
                    self.image_requests += 1
                    wanted.append(ref)
            shown.append(ref)
        return shown, wanted

    def _release(self) -> Iterator[Request]:
        """Requests for waiting images, while fewer than MAX_IMAGE_REQUESTS are out."""
        while self.backlog and self.images_out < MAX_IMAGE_REQUESTS and self.failure is None \
                and not self.deadline_reached:
            ref, page = self.backlog.popleft()
            self.images_out += 1
            meta: dict[str, Any] = {"image": True, "ref": ref, "page": page}
            if conditional := _conditional(self.plan.validators.get(ref.url)):
                meta.update(conditional=conditional, handle_httpstatus_list=[304])
            yield Request(ref.url, callback=self.parse_image, errback=self.failed, dont_filter=True,
                          priority=IMAGE_PRIORITY, meta=meta)

    def _idle(self) -> None:
        """Nothing is under way: the images still waiting are requested (never left behind, even if a
        request was lost without its callback or errback)."""
        if self.backlog and self.failure is None and not self.deadline_reached:
            self.images_out = 0
            for request in self._release():
                self.crawler.engine.crawl(request)
            raise DontCloseSpider

    def _robots_parsed(self, robotparser: Any, request: Request) -> None:
        """robots.txt of a host was read: its Sitemap: lines are read too (if in scope)."""
        for url in getattr(getattr(robotparser, "rp", None), "sitemaps", ()) if self.plan.sitemaps else ():
            if sitemap := self._sitemap_request(urljoin(request.url, url)):  # relative: leniently resolved
                self.crawler.engine.crawl(sitemap)

    def _sitemap_request(self, url: str, guessed: bool = False) -> Request | None:
        """A request for a sitemap file, the first time `url` is met, within the scope's hosts and
        MAX_SITEMAPS. Its pages count as start URLs (depth 0). `guessed`: /sitemap.xml, which many
        sites do not have: its absence is not reported."""
        url = urldefrag(url).url
        if (url in self.seen["sitemap"] or len(self.seen["sitemap"]) >= MAX_SITEMAPS or self.failure is not None
                or self.scope.refusal(url, check_prefix=False)):
            return None
        self.seen["sitemap"].add(url)
        return Request(url, callback=self.parse_sitemap, errback=self.failed, dont_filter=True,
                       meta={"sitemap": True, "guessed": guessed, "depth": -1})

    def parse_sitemap(self, response: Response) -> Iterator[Request]:
        """Sitemap index: its sitemaps; sitemap: its pages, the most recently modified first
        (`lastmod`), each within scope and the crawl's page limit like any link."""
        url = response.request.url if response.request is not None else response.url
        entries = sitemap_entries(response.body, self.fetcher.policy.max_bytes)
        if entries is None:
            if not response.meta.get("guessed"):
                self.skip(url, "not_a_sitemap", f"{url} is not a sitemap (XML, or gzip-compressed XML)")
            return
        kind, locations = entries
        for location in (urljoin(response.url, location) for location in locations):
            request = self._sitemap_request(location) if kind == "sitemapindex" else self._page_request(location)
            if request is not None:
                yield request

    def parse_image(self, response: Response) -> Iterator[Request]:
        self.images_out -= 1
        self._image_answer(response)
        yield from self._release()

    def _image_answer(self, response: Response) -> None:
        ref: ImageRef = response.meta["ref"]
        page: Page = response.meta["page"]
        header = b", ".join(response.headers.getlist("X-Robots-Tag")).decode("latin-1")
        if blocks_images(robots := robots_directives(header)):
            self.skip(ref.url, "noimageindex", f"{ref.url}: X-Robots-Tag says {', '.join(sorted(robots))}")
            return
        if response.status == 304:
            self.not_modified += 1
        else:
            self.images += 1
            self._capture(response)
        headers = response.headers
        self._call(self.plan.on_image, ImageFound(
            url=ref.url, final_url=response.url, page_url=ref.page_url, alt=ref.alt,
            canonical_url=page.canonical_url, page_title=page.title, status=response.status,
            body=response.body if response.status != 304 else b"",
            content_type=headers.get("Content-Type", b"").decode("latin-1"),
            etag=_header(headers, b"ETag"), last_modified=_header(headers, b"Last-Modified")))

    def failed(self, failure: Failure) -> Iterator[Request]:
        """Errback of every request: report why it was not fetched (and request waiting images)."""
        if failure.request.meta.get("image"):  # type: ignore[attr-defined]
            self.images_out -= 1
        self._report_failure(failure)
        yield from self._release()

    def _report_failure(self, failure: Failure) -> None:
        url = failure.request.url  # type: ignore[attr-defined]
        error = failure.value
        if failure.request.meta.get("guessed"):  # type: ignore[attr-defined]
            return  # no /sitemap.xml (most sites have none), or robots.txt disallows it
        if isinstance(error, HttpError):
            reason, message = "http_status", f"{url}: HTTP status {error.response.status}"
        elif isinstance(error, (FetchError, Skipped)):
            reason, message = error.reason, str(error)
        elif isinstance(error, IgnoreRequest) and "robots.txt" in str(error):
            reason, message = "robots", f"{url} is disallowed by robots.txt"
        elif isinstance(error, IgnoreRequest) and "DecompressionMaxSize" in type(error.__cause__).__name__:
            # Scrapy's compression middleware stopped a decompression bomb at DOWNLOAD_MAXSIZE
            reason, message = "too_large", f"{url}: the page decompresses to more than the size limit ({error})"
        else:
            reason, message = "error", f"{url}: {type(error).__name__}: {error}"
        self.skip(url, reason, message)


def _conditional(validators: tuple[str | None, str | None] | None) -> dict[str, str]:
    """The conditional request headers for the (ETag, Last-Modified) stored before."""
    etag, last_modified = validators or (None, None)
    headers = {"if-none-match": etag} if etag else {}
    if last_modified:
        headers["if-modified-since"] = last_modified
    return headers


def _header(headers: Any, name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1")[:512] if value else None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
