"""robots.txt for the crawler (RFC 9309), read so that every way of failing means "disallow all".

Three parts, each a place where Scrapy alone would let a broken robots.txt allow everything:

* `read_robots` (called by the download handler on the robots.txt answer, before any Scrapy
  middleware sees it): 4xx means "no robots.txt" (allow all, RFC 9309 2.3.1.3); a 2xx body must
  decode completely and correctly from its Content-Encoding (`bodies.decode_strictly`: a corrupt or
  truncated stream is refused), decode to at most the fetch size limit (a bomb is refused after
  that many bytes, never held: only the parsed prefix is kept), and be UTF-8 text (a UTF-16 or
  Latin-1 file, or NUL bytes, is refused). Anything else raises `Unreadable`, and the handler
  answers the middleware with a disallow-all file (RFC 9309 2.3.1.4). The first `MAX_PARSED`
  bytes (500 KiB, the least RFC 9309 2.5 lets a crawler parse), cut at the last line end, are
  parsed; the rest is ignored, so a 10 MB robots.txt costs one bounded parse.
* `RobotsRules` (Scrapy's ROBOTSTXT_PARSER): Protego rules, with groups chosen by the crawler's
  product token as RFC 9309 2.2.1 says: a `User-agent:` line applies when the leading run of
  letters, `_` and `-` of its value equals the token, case-insensitively (`FaceTrail/0.1`,
  `facetrail` and `FACETRAIL` all name facetrail; `face` or `facetrail-images` do not), and all
  groups naming it are combined; otherwise the `*` group applies.
* `RobotsMiddleware` (replaces Scrapy's RobotsTxtMiddleware): any exception while fetching or
  parsing robots.txt, at any layer, leaves the host disallowed instead of allowed, and is
  reported as `robots_unreachable`. It honours `Crawl-delay` of the group that applies as a floor
  on the time between the starts of two fetches from the host (`Pacer`, applied by the handler),
  on top of the crawl's own delay; a `Crawl-delay` above `MAX_CRAWL_DELAY` (60 s) leaves the host
  alone (disallowed, reported as `robots_unreachable`), since the crawler will not wait that long.
* `RobotsCache`: the same rules for fetches outside a crawl (`ingest urls`), per origin.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from protego import Protego
from scrapy import signals
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware
from scrapy.http import Request, Response
from scrapy.robotstxt import RobotParser
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.python import to_unicode

from .bodies import Corrupt, Unsupported, decode_strictly
from .fetch import FetchError, SafeFetcher

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

MAX_PARSED = 500 * 1024  # bytes of robots.txt parsed (RFC 9309 2.5: at least 500 KiB)
MAX_CRAWL_DELAY = 60.0  # seconds; a robots.txt asking for more leaves the host alone
DISALLOW_ALL = b"User-agent: *\nDisallow: /\n"
_TOKEN = re.compile(r"[A-Za-z_-]+")
_USER_AGENT_LINE = re.compile(r"^\s*user[- ]?agent\s*(?::|\s)\s*([^#]*)", re.IGNORECASE)
_OTHER = "~other"  # stands for every product token that is not ours: it never matches ours


class Unreadable(Exception):
    """A robots.txt that cannot be read completely and correctly: the host is disallowed."""


def product_token(user_agent: str) -> str:
    """The product token of a User-Agent (`facetrail/0.1 (+https://...)` -> `facetrail`), lowercased."""
    match = _TOKEN.match(user_agent.strip())
    if match is None:
        raise ValueError(f"the user agent {user_agent!r} does not start with a product token")
    return match.group(0).lower()


def read_robots(status: int, headers: Mapping[str, str], body: bytes, max_bytes: int) -> bytes:
    """The robots.txt text to parse (UTF-8, at most `MAX_PARSED` bytes) from its HTTP answer;
    `headers` by lowercase name. Raises `Unreadable` (see the module docstring)."""
    if 400 <= status < 500:
        return b""  # unavailable: the crawler may access any resource (RFC 9309 2.3.1.3)
    if not 200 <= status < 300:
        raise Unreadable(f"HTTP status {status}")
    encodings = headers.get("content-encoding", "").split(",")
    prefix, size = bytearray(), 0
    try:
        for piece in decode_strictly(body, encodings):
            size += len(piece)
            if size > max_bytes:
                raise Unreadable(f"it decompresses to more than {max_bytes} bytes (a decompression bomb?)")
            if len(prefix) <= MAX_PARSED:
                prefix += piece[: MAX_PARSED + 1 - len(prefix)]
    except Corrupt as exc:
        raise Unreadable(f"its {headers.get('content-encoding')} encoding is corrupt ({exc})") from None
    except Unsupported as exc:
        raise Unreadable(f"unknown Content-Encoding {exc}") from None
    text = bytes(prefix)
    if len(text) > MAX_PARSED:  # parse the prefix, up to its last complete line
        end = text.rfind(b"\n", 0, MAX_PARSED)
        if end < 0:
            raise Unreadable(f"no line ends within its first {MAX_PARSED} bytes")
        text = text[: end + 1]
    try:
        decoded = text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"it is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if "\x00" in decoded:
        raise Unreadable("it holds NUL bytes (UTF-16 or binary, not UTF-8 text)")
    return decoded.encode()


def _grouped(text: str, token: str) -> str:
    """`text` with each User-agent value replaced by `token` when its product token is ours, and by
    a value that never matches otherwise (Protego itself matches by substring)."""
    lines = []
    for line in text.splitlines():
        if match := _USER_AGENT_LINE.match(line):
            value = match.group(1).strip()
            if value == "*":
                line = "User-agent: *"
            elif value:
                found = _TOKEN.match(value)
                line = f"User-agent: {token if found and found.group(0).lower() == token else _OTHER}"
        lines.append(line)
    return "\n".join(lines)


class RobotsRules(RobotParser):
    """ROBOTSTXT_PARSER of the crawl: Protego over the text `read_robots` gave, for our product token."""

    def __init__(self, body: bytes, token: str) -> None:
        self.token = token
        self.rp = Protego.parse(_grouped(body.decode("utf-8"), token))  # strict: the handler checked it

    @classmethod
    def from_crawler(cls, crawler: Crawler, robotstxt_body: bytes) -> RobotsRules:
        return cls(robotstxt_body, product_token(crawler.settings["USER_AGENT"]))

    def allowed(self, url: str | bytes, user_agent: str | bytes) -> bool:
        return self.rp.can_fetch(to_unicode(url), self.token)

    def crawl_delay(self, user_agent: str | bytes = "") -> float | None:
        delay = self.rp.crawl_delay(self.token)
        return None if delay is None else float(delay)


class Pacer:
    """Per host (netloc), the least time between the starts of two fetches (`Crawl-delay`)."""

    def __init__(self) -> None:
        self._floors: dict[str, float] = {}
        self._next: dict[str, float] = {}

    def set_floor(self, netloc: str, seconds: float) -> None:
        self._floors[netloc] = seconds
        self._next[netloc] = max(self._next.get(netloc, 0.0), time.monotonic() + seconds)  # after robots.txt

    async def wait(self, netloc: str) -> None:
        """Sleep until the host's next start time, and book the one after it."""
        if not (floor := self._floors.get(netloc)):
            return
        now = time.monotonic()
        start = max(now, self._next.get(netloc, now))
        self._next[netloc] = start + floor
        if start > now:
            await asyncio.sleep(start - now)


_PACERS: weakref.WeakKeyDictionary[Any, Pacer] = weakref.WeakKeyDictionary()


def pacer(crawler: Crawler) -> Pacer:
    """The crawl's `Pacer`, shared by the robots middleware (which sets floors) and the handler."""
    if (found := _PACERS.get(crawler)) is None:
        found = _PACERS[crawler] = Pacer()
    return found


@dataclass(frozen=True)
class HostRules:
    """The robots.txt of one origin as a fetcher outside a crawl (URL lists) obeys it."""

    rules: RobotsRules
    delay: float  # Crawl-delay of our group, 0 if none
    unreadable: str | None  # why the whole host is disallowed (robots.txt unreadable, delay too long)
    refused: FetchError | None = None  # the fetcher refuses the host itself (its address, its name)


_HOST_REFUSED = frozenset({"refused_address", "dns", "bad_url", "scheme"})  # any fetch there fails alike


class RobotsCache:
    """robots.txt per origin for fetches outside a crawl, read and matched exactly as the crawler does
    (`read_robots`, `RobotsRules`): unreadable means disallow all. Keeps the last `size` origins."""

    def __init__(self, fetcher: SafeFetcher, user_agent: str, size: int = 256) -> None:
        self.fetcher, self.token, self.size = fetcher, product_token(user_agent), size
        self.user_agent = user_agent
        self._hosts: OrderedDict[str, HostRules] = OrderedDict()

    def rules(self, url: str) -> tuple[HostRules, bool]:
        """The rules of `url`'s origin, and whether robots.txt was fetched for it just now."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if (found := self._hosts.get(origin)) is not None:
            self._hosts.move_to_end(origin)
            return found, False
        found = self._hosts[origin] = self._read(origin + "/robots.txt")
        if len(self._hosts) > self.size:
            self._hosts.popitem(last=False)
        return found, True

    def _read(self, robots_url: str) -> HostRules:
        try:
            answer = self.fetcher.fetch(robots_url, headers={"user-agent": self.user_agent}, prefix=MAX_PARSED + 1)
            text = read_robots(answer.status, answer.headers, answer.body, self.fetcher.policy.max_bytes)
        except (FetchError, Unreadable) as exc:
            refused = exc if isinstance(exc, FetchError) and exc.reason in _HOST_REFUSED else None
            return HostRules(RobotsRules(DISALLOW_ALL, self.token), 0.0, f"{robots_url} unreachable or "
                             f"unreadable ({exc}): the whole host is treated as disallowed (RFC 9309)", refused)
        rules = RobotsRules(text, self.token)
        delay = rules.crawl_delay() or 0.0
        if delay > MAX_CRAWL_DELAY:
            return HostRules(RobotsRules(DISALLOW_ALL, self.token), delay, f"{robots_url} asks for {delay:g} s "
                             f"between requests, more than the maximum of {MAX_CRAWL_DELAY:g} s: the host is left alone")
        return HostRules(rules, delay, None)


_MIDDLEWARES: weakref.WeakKeyDictionary[Any, RobotsMiddleware] = weakref.WeakKeyDictionary()


def robots_allows(crawler: Crawler, url: str) -> bool | None:
    """The crawl's robots.txt verdict on `url` (None: its host's robots.txt has not been read)."""
    middleware = _MIDDLEWARES.get(crawler)
    return None if middleware is None else middleware.allows(url)


class RobotsMiddleware(RobotsTxtMiddleware):
    """Scrapy's robots.txt middleware, failing closed and honouring `Crawl-delay` (module docstring)."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        self._urls: dict[str, str] = {}  # netloc -> its robots.txt URL, for reports
        _MIDDLEWARES[crawler] = self

    def allows(self, url: str) -> bool | None:
        """Whether the robots.txt read for `url`'s host allows it; None if it has not been read."""
        rules = self._parsers.get(urlsplit(url).netloc)
        return rules.allowed(url, "") if isinstance(rules, RobotsRules) else None

    def _report(self, netloc: str, message: str) -> None:
        spider: Any = self.crawler.spider
        spider.skip(self._urls.get(netloc, f"http://{netloc}/robots.txt"), "robots_unreachable", message)

    async def robot_parser(self, request: Request) -> RobotParser | None:
        url = urlparse_cached(request)
        self._urls.setdefault(url.netloc, f"{url.scheme}://{url.netloc}/robots.txt")
        return await super().robot_parser(request)

    async def _parse_robots(self, response: Response, netloc: str, request: Request) -> None:
        self._stats.inc_value("robotstxt/response_count")
        rules = RobotsRules.from_crawler(self.crawler, response.body)
        delay = rules.crawl_delay()
        if delay is not None and delay > MAX_CRAWL_DELAY:
            self._report(netloc, f"robots.txt asks for {delay:g} s between requests, more than the "
                         f"crawler's maximum of {MAX_CRAWL_DELAY:g} s: the host is left alone")
            rules = RobotsRules(DISALLOW_ALL, rules.token)
        elif delay:
            pacer(self.crawler).set_floor(netloc, delay)
        await self.crawler.signals.send_catch_log_async(signal=signals.robots_parsed, robotparser=rules,
                                                        request=request)
        self._settle(netloc, rules)

    def _robots_error(self, exc: Exception, netloc: str) -> None:
        self._report(netloc, f"robots.txt could not be read ({type(exc).__name__}: {exc}): the whole host "
                     "is treated as disallowed (RFC 9309)")
        self._settle(netloc, RobotsRules(DISALLOW_ALL, product_token(self.crawler.settings["USER_AGENT"])))

    def _settle(self, netloc: str, rules: RobotsRules) -> None:
        waiting = self._parsers[netloc]
        self._parsers[netloc] = rules
        if hasattr(waiting, "callback"):
            waiting.callback(rules)
