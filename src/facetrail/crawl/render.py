"""Optional JavaScript rendering of a crawl's pages (a source declared with `render_js`): Debian's
Chromium, driven by Playwright, runs the page's scripts, and the crawler reads the DOM they built.

The browser never reaches the network itself. Every request it makes is intercepted (`page.route`)
and either answered with bytes `SafeFetcher` fetched (so its SSRF rules, pinned addresses, size and
time limits apply) or aborted: a request is fetched only if it is in the crawl's scope and allowed
by the robots.txt rules already read for its host (a host whose robots.txt the crawl has not read
is refused); images, media and fonts are not fetched (the crawler fetches the images it finds
itself); WebSockets are closed. Behind the interception, the browser's own network stack is sent
to a proxy on a closed loopback port and WebRTC may not use UDP, so anything the interception did
not see fails instead of leaving.
"""

from __future__ import annotations

import asyncio
import shutil
import weakref
from dataclasses import dataclass
from typing import Any

from .bodies import Corrupt, Unsupported, decode_strictly
from .fetch import FetchError, Response, SafeFetcher
from .scope import Scope

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BLACKHOLE_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, every connection fails
_SKIPPED_TYPES = frozenset({"image", "media", "font"})
_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--dns-prefetch-disable",
         "--force-webrtc-ip-handling-policy=disable_non_proxied_udp"]


@dataclass
class Rules:
    """What the browser may fetch: the crawl's scope and a robots.txt check (url -> allowed, or None
    when the host's robots.txt has not been read)."""

    scope: Scope
    robots_allows: Any  # Callable[[str], bool | None]


class Renderer:
    """One browser per crawl, started at the first page rendered, closed with the crawl."""

    def __init__(self) -> None:
        self._playwright: Any = None
        self._browser: Any = None
        self._lock = asyncio.Lock()
        self.refused: list[tuple[str, str]] = []  # (url, why) of every browser request not fetched

    async def _start(self) -> Any:
        async with self._lock:
            if self._browser is None:
                from playwright.async_api import async_playwright

                self._playwright = await async_playwright().start()
                self._browser = await self._playwright.chromium.launch(
                    executable_path=CHROMIUM, args=_ARGS, proxy={"server": BLACKHOLE_PROXY})
        return self._browser

    async def close(self) -> None:
        if self._browser is not None:
            await self._browser.close()
            await self._playwright.stop()
            self._browser = self._playwright = None

    async def render(self, document: Response, fetcher: SafeFetcher, rules: Rules, user_agent: str,
                     timeout: float) -> str:
        """The DOM (as HTML) after the page's scripts ran on `document` (fetched already)."""
        browser = await self._start()
        context = await browser.new_context(user_agent=user_agent, service_workers="block",
                                            accept_downloads=False)
        try:
            await context.route_web_socket("**/*", lambda socket: socket.close())
            await context.route("**/*", lambda route: self._answer(route, document, fetcher, rules, user_agent))
            page = await context.new_page()
            await page.goto(document.final_url, wait_until="load", timeout=timeout * 1000)
            try:
                await page.wait_for_load_state("networkidle", timeout=min(timeout, 5) * 1000)
            except Exception:  # noqa: BLE001 - a page that keeps polling: take the DOM as it is
                pass
            return await page.content()
        finally:
            await context.close()

    async def _answer(self, route: Any, document: Response, fetcher: SafeFetcher, rules: Rules,
                      user_agent: str) -> None:
        request = route.request
        url = request.url
        if url == document.final_url and request.is_navigation_request():
            fetched: Response | None = document
            why = None
        elif (why := _refusal(url, request.resource_type, request.method, rules)) is None:
            try:
                fetched = await asyncio.to_thread(fetcher.fetch, url, headers={"user-agent": user_agent})
            except FetchError as exc:
                why = exc.reason
        if why is None and fetched is not None:
            if (answer := _decoded(fetched, fetcher.policy.max_bytes)) is not None:
                await route.fulfill(status=fetched.status, headers=answer[0], body=answer[1])
                return
            why = "too_large"
        self.refused.append((url, why))
        await route.abort("blockedbyclient")


def _refusal(url: str, resource_type: str, method: str, rules: Rules) -> str | None:
    if not url.startswith(("http://", "https://")):
        return "scheme"
    if method != "GET":
        return "method"  # a crawler only reads
    if resource_type in _SKIPPED_TYPES:
        return "not_needed"
    if why := rules.scope.refusal(url, check_prefix=False):
        return why
    allowed = rules.robots_allows(url)
    if allowed is None:
        return "robots_unread"
    return None if allowed else "robots"


def _decoded(response: Response, max_bytes: int) -> tuple[dict[str, str], bytes] | None:
    """The headers and body to hand the browser: the Content-Encoding undone here, strictly and
    to at most `max_bytes` (the browser would inflate a bomb without limit); None if it cannot be."""
    body = bytearray()
    try:
        for piece in decode_strictly(response.body, response.headers.get("content-encoding", "").split(",")):
            body += piece
            if len(body) > max_bytes:
                return None
    except (Corrupt, Unsupported):
        return None
    headers = {name: value for name, value in response.headers.items()
               if name not in ("content-length", "transfer-encoding", "connection", "content-encoding")}
    return headers, bytes(body)


_RENDERERS: weakref.WeakKeyDictionary[Any, Renderer] = weakref.WeakKeyDictionary()


def renderer(crawler: Any) -> Renderer:
    """The crawl's `Renderer` (shared by the http and https handlers)."""
    if (found := _RENDERERS.get(crawler)) is None:
        found = _RENDERERS[crawler] = Renderer()
    return found
