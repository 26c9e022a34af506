"""The crawler (facetrail.crawl) against a local web of several servers on 127.0.0.1.

No traffic ever leaves 127.0.0.1: host names resolve through the fetcher's injected resolver (which
records every name asked), and a guard on socket.create_connection refuses and records any other
address. The fetcher's allow list holds exactly the in-scope ports, so any other loopback port is
refused by the fetcher too.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from facetrail.crawl import CrawlSummary, ImageFound, Page, Scope, crawl, extract, is_excluded
from facetrail.crawl.fetch import FetchPolicy, SafeFetcher, parse_allow

from .support import Route, Site, image_bytes, serve

FACE1, FACE2, FACE3 = image_bytes("red"), image_bytes("green"), image_bytes("blue", "PNG")
FACE4, OG, LINKED = image_bytes("yellow", "PNG"), image_bytes("white"), image_bytes("black")
REL, L3, B1 = image_bytes("purple"), image_bytes("orange"), image_bytes("pink", "PNG")
NAMES = {"a.test", "a-alias.test", "b.test", "out.test", "c.test"}  # all resolve to 127.0.0.1


@dataclass
class Run:
    """One crawl and everything it reported."""

    summary: CrawlSummary
    pages: list[Page] = field(default_factory=list)
    images: list[ImageFound] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)

    def skipped(self) -> set[tuple[str, str]]:
        return {(url, reason) for url, reason, _ in self.errors}


@dataclass
class Guard:
    connections: list[tuple[str, int]] = field(default_factory=list)
    listening: list[int] = field(default_factory=list)  # ports a socket listened on
    lookups: list[str] = field(default_factory=list)  # names the fetcher resolved


@pytest.fixture(scope="module")
def guard() -> Iterator[Guard]:
    record = Guard()
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        record.connections.append(address)
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(f"test guard: no traffic to {address[0]}")
        return real(address, *args, **kwargs)

    real_lookup = socket.getaddrinfo

    def lookup(host, *args, **kwargs):  # create_connection itself calls it, with the IP
        if host != "127.0.0.1":
            record.connections.append((host, 0))
            raise OSError(f"test guard: no DNS lookup of {host!r}")
        return real_lookup(host, *args, **kwargs)

    real_listen = socket.socket.listen

    def listen(sock: socket.socket, *args) -> None:
        record.listening.append(sock.getsockname()[1])
        real_listen(sock, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "listen", listen)
        patch.setattr(socket, "create_connection", guarded)
        patch.setattr(socket, "getaddrinfo", lookup)
        yield record
    assert {host for host, _ in record.connections} <= {"127.0.0.1"}, record.connections


def fetcher_for(guard: Guard, *sites: Site, **policy) -> SafeFetcher:
    """A fetcher allowed exactly the ports of `sites`, resolving the test names to 127.0.0.1."""

    def resolve(host: str) -> list[str]:
        guard.lookups.append(host)
        if host not in NAMES:
            raise OSError(f"test resolver: unknown name {host}")
        return ["127.0.0.1"]

    limits = {"connect_timeout": 1, "read_timeout": 0.5, "deadline": 0.8, "max_bytes": 300_000,
              "max_redirects": 3, "user_agent": "facetrail-test", **policy}
    allow = parse_allow(" ".join(f"127.0.0.1:{site.port}" for site in sites))
    return SafeFetcher(FetchPolicy(allow=allow, **limits), resolve=resolve)


def run(start: list[str], scope: Scope, fetcher: SafeFetcher, **options) -> Run:
    pages: list[Page] = []
    images: list[ImageFound] = []
    errors: list[tuple[str, str, str]] = []
    options.setdefault("sitemaps", False)  # tests of sitemaps ask for them: /sitemap.xml is requested then
    summary = crawl(start, scope, fetcher, delay=0, retry_backoff=0.05, on_page=pages.append,
                    on_image=images.append, on_error=lambda *error: errors.append(error), **options)
    return Run(summary, pages, images, errors)


def scope_of(*sites: Site, prefixes: tuple[str, ...] = ()) -> Scope:
    return Scope(frozenset(site.host for site in sites), prefixes)


# --- the main local web -------------------------------------------------------------------------

@dataclass
class Web:
    a: Site
    b: Site
    out: Site  # a host outside the scope (port not allowed either)
    loop: Site  # a loopback port outside the scope and the allow list, addressed as 127.0.0.1
    result: Run


def _build(a: Site, b: Site, out: Site, loop: Site) -> None:
    home = f"""<html><head><title>Home page</title><link rel="canonical" href="/index">
        <meta property="og:image" content="{b.url('/img/og.jpg')}"></head><body>
        <img src="/img/face1.jpg" alt="Face one">
        <img srcset="/img/face2.jpg 1x, /img/face3.png 2x" alt="Face two">
        <picture><source srcset="/img/face4.png 480w"><img src="/img/face1.jpg" alt="Picture"></picture>
        <a href="/img/linked.jpg">a linked photo</a>
        <img src="/img/blocked/hidden.jpg"> <img src="/img/huge.jpg"> <img src="/img/broken.jpg">
        <img src="/img/xr.jpg"> <img src="{out.url('/img/ext.jpg')}">
        <img src="https://scontent.instagram.com/p.jpg">
        <a href="/level1.html">1</a> <a href="/private/secret.html">private</a>
        <a href="/404.html">404</a> <a href="/500.html">500</a> <a href="/slow.html">slow</a>
        <a href="/go-out">out</a> <a href="/go-loop">loop</a> <a href="/go-alias">alias</a>
        <a href="https://www.facebook.com/x">facebook</a> <a href="{b.url('/b.html')}">b</a>
        <a href="/noai.html">noai</a> <a href="/xrobots.html">xrobots</a> <a href="/data.txt">data</a>
        <a href="/">home</a> <a href="/#top">top</a></body></html>"""
    a.routes.update({
        "/robots.txt": Route(b"User-agent: *\nDisallow: /private/\nDisallow: /img/blocked/\n",
                             content_type="text/plain"),
        "/": Route.html(home),
        "/level1.html": Route.html('<head><base href="/deep/"></head><img src="rel.jpg">'
                                   '<a href="level2.html">2</a> <a href="/">home</a>'),
        "/deep/level2.html": Route.html('<img src="/img/face1.jpg"><a href="level3.html">3</a>'),
        "/deep/level3.html": Route.html('<img src="l3.jpg"><a href="level4.html">4</a>'),
        "/deep/level4.html": Route.html("too deep"),
        "/private/secret.html": Route.html("disallowed by robots.txt"),
        "/500.html": Route.html("oops", status=500),
        "/slow.html": Route.html("late", delay=1.5),
        "/go-out": Route(location=out.url("/landing.html")),
        "/go-loop": Route(location=loop.url("/x")),
        "/go-alias": Route(location=f"http://a-alias.test:{a.port}/alias.html"),
        "/alias.html": Route.html('<img src="/img/alias.jpg">'),
        "/noai.html": Route.html('<meta name="robots" content="noai"><img src="/img/noai.jpg">'),
        "/xrobots.html": Route.html('<img src="/img/xpage.jpg">', headers={"X-Robots-Tag": "noimageindex"}),
        "/data.txt": Route(b"plain", content_type="text/plain"),
        "/img/face1.jpg": Route.image(FACE1),
        "/img/face2.jpg": Route.image(FACE2),
        "/img/face3.png": Route.image(FACE3, "image/png"),
        "/img/face4.png": Route.image(FACE4, "image/png"),
        "/img/linked.jpg": Route.image(LINKED),
        "/deep/rel.jpg": Route.image(REL),
        "/deep/l3.jpg": Route.image(L3),
        "/img/blocked/hidden.jpg": Route.image(FACE1),
        "/img/huge.jpg": Route.image(FACE1[:4] + bytes(400_000)),
        "/img/broken.jpg": Route.image(b"<html>not an image</html>"),
        "/img/xr.jpg": Route.image(FACE1, headers={"X-Robots-Tag": "otherbot: noai"}),
        "/img/noai.jpg": Route.image(FACE1),
        "/img/xpage.jpg": Route.image(FACE1),
    })
    b.routes.update({
        "/b.html": Route.html(f'<title>B</title><img src="/img/b1.png" alt="b one">'
                              f'<a href="{a.url("/level1.html")}">a</a>'),
        "/img/og.jpg": Route.image(OG),
        "/img/b1.png": Route.image(B1, "image/png"),
    })
    out.routes["/landing.html"] = Route.html("outside")
    loop.routes["/x"] = Route.html("outside")


@pytest.fixture(scope="module")
def web(guard: Guard) -> Iterator[Web]:
    with serve("a.test", "b.test", "out.test", "") as (a, b, out, loop):
        _build(a, b, out, loop)
        result = run([a.url("/")], scope_of(a, b), fetcher_for(guard, a, b), max_depth=3, retries=1,
                     sitemaps=True)  # the site has none: /sitemap.xml is asked for, its 404 not reported
        yield Web(a, b, out, loop, result)


def test_pages_fetched(web: Web) -> None:
    a, b = web.a, web.b
    assert {page.final_url for page in web.result.pages} == {
        a.url("/"), a.url("/level1.html"), a.url("/deep/level2.html"), a.url("/deep/level3.html"),
        a.url("/noai.html"), a.url("/xrobots.html"), b.url("/b.html")}
    home = next(page for page in web.result.pages if page.final_url == a.url("/"))
    assert home.title == "Home page" and home.canonical_url == a.url("/index") and home.status == 200
    assert [(ref.url, ref.alt) for ref in home.images][:6] == [
        (a.url("/img/face1.jpg"), "Face one"), (a.url("/img/face2.jpg"), "Face two"),
        (a.url("/img/face3.png"), "Face two"), (a.url("/img/blocked/hidden.jpg"), ""),
        (a.url("/img/huge.jpg"), ""), (a.url("/img/broken.jpg"), "")]
    assert web.result.summary.pages == 7 and not web.result.summary.limit_reached


def test_images_fetched_once_with_their_bytes(web: Web) -> None:
    a, b = web.a, web.b
    got = {image.url: image for image in web.result.images}
    assert len(got) == len(web.result.images)  # each image once, though face1 is on three pages
    assert {url: image.body for url, image in got.items()} == {
        a.url("/img/face1.jpg"): FACE1, a.url("/img/face2.jpg"): FACE2, a.url("/img/face3.png"): FACE3,
        a.url("/img/face4.png"): FACE4, a.url("/img/linked.jpg"): LINKED, b.url("/img/og.jpg"): OG,
        a.url("/deep/rel.jpg"): REL, a.url("/deep/l3.jpg"): L3, b.url("/img/b1.png"): B1}
    face1 = got[a.url("/img/face1.jpg")]
    assert (face1.page_url, face1.alt, face1.page_title, face1.canonical_url, face1.content_type) == (
        a.url("/"), "Face one", "Home page", a.url("/index"), "image/jpeg")
    assert got[a.url("/img/face4.png")].alt == "Picture"
    assert got[a.url("/img/linked.jpg")].alt == "a linked photo"
    # every appearance is on its page: face1 on the home page and on level 2
    appearances = {ref.page_url for page in web.result.pages for ref in page.images
                   if ref.url == a.url("/img/face1.jpg")}
    assert appearances == {a.url("/"), a.url("/deep/level2.html")}
    assert web.result.summary.images == 9


def test_skips_and_reasons(web: Web) -> None:
    a, out = web.a, web.out
    assert web.result.skipped() == {
        (a.url("/private/secret.html"), "robots"),
        (a.url("/img/blocked/hidden.jpg"), "robots"),
        (a.url("/404.html"), "http_status"),
        (a.url("/500.html"), "http_status"),
        (a.url("/slow.html"), "timeout"),
        (a.url("/go-out"), "refused_address"),  # out.test's port is not on the allow list
        (a.url("/go-loop"), "refused_address"),  # nor is the other loopback port
        (a.url("/go-alias"), "out_of_scope"),  # landed on a host name outside the scope
        (out.url("/img/ext.jpg"), "out_of_scope"),
        ("https://scontent.instagram.com/p.jpg", "excluded_domain"),
        ("https://www.facebook.com/x", "excluded_domain"),
        (a.url("/data.txt"), "not_html"),
        (a.url("/img/huge.jpg"), "too_large"),
        (a.url("/img/broken.jpg"), "not_an_image"),
        (a.url("/img/xr.jpg"), "noimageindex"),
        (a.url("/noai.html"), "noimageindex"),
        (a.url("/xrobots.html"), "noimageindex"),
    }
    assert len(web.result.errors) == len(web.result.skipped())  # each reported once
    assert web.result.summary.skipped == {
        "robots": 2, "http_status": 2, "timeout": 1, "refused_address": 2, "out_of_scope": 2,
        "excluded_domain": 2, "not_html": 1, "too_large": 1, "not_an_image": 1, "noimageindex": 3}
    pages = {page.final_url: page for page in web.result.pages}
    assert pages[a.url("/noai.html")].images == [] and "noai" in pages[a.url("/noai.html")].robots
    assert pages[a.url("/xrobots.html")].images == []


def test_server_logs(web: Web, guard: Guard) -> None:
    """Exactly these requests were made: nothing disallowed, out of scope, too deep or excluded."""
    assert Counter(web.a.log) == Counter({(web.a.host, path): 1 for path in [
        "/robots.txt", "/sitemap.xml", "/", "/level1.html", "/deep/level2.html", "/deep/level3.html", "/noai.html",
        "/xrobots.html", "/404.html", "/go-out", "/go-loop", "/go-alias", "/data.txt",
        "/img/face1.jpg", "/img/face2.jpg", "/img/face3.png", "/img/face4.png", "/img/linked.jpg",
        "/deep/rel.jpg", "/deep/l3.jpg", "/img/huge.jpg", "/img/broken.jpg", "/img/xr.jpg"]}) + Counter({
        (web.a.host, "/500.html"): 2, (web.a.host, "/slow.html"): 2,  # one retry each
        # SafeFetcher follows redirects itself, so the scope is checked on the final URL only: this
        # out-of-scope hop (an allowed address under another name) was requested, then dropped.
        (f"a-alias.test:{web.a.port}", "/alias.html"): 1})
    assert Counter(web.b.log) == Counter(
        (web.b.host, path) for path in ["/robots.txt", "/b.html", "/img/og.jpg", "/img/b1.png"])
    assert web.out.log == [] and web.loop.log == []
    assert {host for host, _ in guard.connections} == {"127.0.0.1"}
    # Nothing listened but the test servers (Scrapy's telnet console and remote control are off).
    assert set(guard.listening) == {site.port for site in (web.a, web.b, web.out, web.loop)}
    assert set(guard.lookups) <= {"a.test", "b.test", "out.test", "a-alias.test"}  # never facebook...


# --- limits, robots.txt failures, repeated crawls -----------------------------------------------

def test_max_pages(guard: Guard) -> None:
    with serve("c.test") as (c,):
        c.routes["/"] = Route.html("".join(f'<a href="/p{n}.html">{n}</a>' for n in range(1, 10)))
        c.routes.update({f"/p{n}.html": Route.html("page") for n in range(1, 10)})
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c), max_pages=3)
    assert {page.final_url for page in result.pages} == {c.url("/"), c.url("/p1.html"), c.url("/p2.html")}
    assert sorted(c.paths()) == ["/", "/p1.html", "/p2.html", "/robots.txt"]
    assert result.summary.limit_reached and result.summary.skipped == {}


def test_max_depth_zero_and_prefixes(guard: Guard) -> None:
    with serve("c.test") as (c,):
        c.routes["/site/"] = Route.html('<img src="/site/a.jpg"><img src="/other/b.jpg">'
                                        '<a href="/site/x">x</a>')
        c.routes["/site/a.jpg"] = Route.image(FACE1)
        result = run([c.url("/site/")], scope_of(c, prefixes=(c.url("/site/"),)), fetcher_for(guard, c),
                     max_depth=0)
    assert [image.url for image in result.images] == [c.url("/site/a.jpg")]
    assert result.skipped() == {(c.url("/other/b.jpg"), "out_of_scope")}
    assert sorted(c.paths()) == ["/robots.txt", "/site/", "/site/a.jpg"]


@pytest.mark.parametrize("robots", [Route(b"down", status=503), Route(b"", delay=1.5)],
                         ids=["5xx", "timeout"])
def test_unreachable_robots_txt_disallows_everything(guard: Guard, robots: Route) -> None:
    with serve("c.test") as (c,):
        c.routes["/robots.txt"] = robots
        c.routes["/"] = Route.html('<img src="/a.jpg">')
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c), retries=0)
    assert result.skipped() == {(c.url("/robots.txt"), "robots_unreachable"), (c.url("/"), "robots")}
    assert c.paths() == ["/robots.txt"] and result.pages == []


def test_start_url_out_of_scope_is_never_requested(guard: Guard) -> None:
    with serve("c.test", "out.test") as (c, out):
        result = run([out.url("/"), "https://m.facebook.com/someone"], scope_of(c), fetcher_for(guard, c))
    assert result.skipped() == {(out.url("/"), "out_of_scope"),
                                ("https://m.facebook.com/someone", "excluded_domain")}
    assert out.log == [] and c.log == []


def test_callback_errors_stop_the_crawl_and_are_raised(guard: Guard) -> None:
    with serve("c.test") as (c,):
        c.routes["/"] = Route.html('<a href="/next">next</a>')

        def boom(page: Page) -> None:
            raise RuntimeError("consumer failed")

        with pytest.raises(RuntimeError, match="consumer failed"):
            crawl([c.url("/")], scope_of(c), fetcher_for(guard, c), delay=0, on_page=boom)
    assert "/next" not in c.paths()


def test_crawl_from_inside_an_event_loop(guard: Guard) -> None:
    """crawl() runs Scrapy on a loop of its own: it works from async code and again and again."""
    with serve("c.test") as (c,):
        c.routes["/"] = Route.html('<img src="/a.jpg">')
        c.routes["/a.jpg"] = Route.image(FACE1)

        async def main() -> CrawlSummary:
            return crawl([c.url("/")], scope_of(c), fetcher_for(guard, c), delay=0)

        assert asyncio.run(main()).images == 1
        assert run([c.url("/")], scope_of(c), fetcher_for(guard, c)).summary.images == 1


def test_user_agent_needs_a_contact_url(guard: Guard) -> None:
    with pytest.raises(ValueError, match="contact URL"):
        crawl(["http://c.test/"], Scope(frozenset({"c.test"})), fetcher_for(guard), user_agent="bot/1.0")


# --- scope and extraction, no network -----------------------------------------------------------

def test_scope() -> None:
    scope = Scope(frozenset({"Example.org", "a.test:8080"}),
                  ("https://example.org/team/", "http://a.test:8080/"))
    assert scope.allows("https://example.org/team/alice.html")
    assert scope.allows("http://example.org:80/team/") is False  # not under a prefix (http vs https)
    assert scope.refusal("https://example.org/other") == "out_of_scope"
    assert scope.refusal("https://example.org/robots.txt", check_prefix=False) is None
    assert scope.allows("http://a.test:8080/x") and not scope.allows("http://a.test:8081/x")
    assert scope.refusal("https://www.youtube.com/team/") == "excluded_domain"
    assert not scope.allows("ftp://example.org/team/") and not scope.allows("not a url")
    assert Scope(frozenset({"example.org"})).allows("https://example.org:443/x")
    for host in ["facebook.com", "www.instagram.com", "m.tiktok.com:443", "youtu.be"]:
        with pytest.raises(ValueError, match="excluded"):
            Scope(frozenset({host}))
    with pytest.raises(ValueError, match="prefix"):
        Scope(frozenset({"example.org"}), ("https://elsewhere.org/",))
    assert is_excluded("old.reddit.com") and is_excluded("OK.RU") and not is_excluded("notreddit.com")


def test_extract_sources_of_images() -> None:
    html = """<html><head><base href="https://cdn.example.org/media/"><title>T</title>
      <meta name="twitter:image" content="tw.jpg"><meta name="Robots" content="NoImageAI, nofollow">
      </head><body><img src="data:image/png;base64,xx" srcset="s1.jpg 480w,s2.jpg 800w, s,3.jpg 2x">
      <a href="javascript:void(0)">j</a><a href="page.html#frag">p</a></body></html>"""
    page = extract(html, url="https://example.org/a", final_url="https://example.org/b", status=200,
                   x_robots_tag="googlebot: noindex")
    assert [ref.url for ref in page.images] == [
        "https://cdn.example.org/media/s1.jpg", "https://cdn.example.org/media/s2.jpg",
        "https://cdn.example.org/media/s,3.jpg", "https://cdn.example.org/media/tw.jpg"]
    assert page.robots == {"noimageai", "nofollow", "noindex"} and page.links == []
    assert extract('<a href="page.html#frag">p</a>', url="http://h/", final_url="http://h/d/",
                   status=200).links == ["http://h/d/page.html"]


def test_a_crawl_stops_at_its_deadline(guard: Guard) -> None:
    """A site of dripping pages (0.4 s each, 30 of them, one at a time) would hold the crawl 12 s;
    the crawl's deadline ends it after 1 s, keeping what it fetched."""
    with serve("c.test") as (c,):
        c.routes["/"] = Route.html("".join(f'<a href="/{n}.html">{n}</a>' for n in range(30)))
        c.routes.update({f"/{n}.html": Route.html("slow", delay=0.4) for n in range(30)})
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c), concurrency=1, max_seconds=1.0)
    assert result.summary.deadline_reached and result.summary.seconds < 6
    assert 1 <= result.summary.pages < 10
    assert result.summary.skipped["deadline"] >= 1  # those the downloader held; the scheduler's are dropped


class _Timed(list):
    """A server log that also notes when each request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, entry) -> None:
        self.times.append(time.monotonic())
        super().append(entry)


def test_at_most_concurrency_requests_per_host_at_delay_0(guard: Guard) -> None:
    """Scrapy's downloader started every queued request of a host at once at delay 0 (6 at a time,
    the thread pool's size, against a configured 2); the handler holds each host to `concurrency`.
    Each page takes 0.3 s to answer, so requests that start within 0.3 s of each other overlap."""
    with serve("c.test") as (c,):
        c.routes["/"] = Route.html("".join(f'<a href="/{n}.html">{n}</a>' for n in range(12)))
        c.routes.update({f"/{n}.html": Route.html("slow", delay=0.3) for n in range(12)})
        c.log = log = _Timed()
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c), concurrency=2)
    assert result.summary.pages == 13
    slow = [when for when, (_, path) in zip(log.times, log) if path.endswith(".html")]
    assert max(sum(1 for other in slow if start <= other < start + 0.3) for start in slow) == 2


def test_a_compressed_page_bomb_is_reported_too_large(guard: Guard) -> None:
    """A 50 MB page sent gzip-compressed (50 KB) under a 300 KB size limit: stopped while inflating,
    counted as too_large (it was counted as error), and nothing of it is followed."""
    import gzip

    with serve("c.test") as (c,):
        c.routes["/"] = Route.html('<a href="/bomb.html">bomb</a>')
        c.routes["/bomb.html"] = Route(gzip.compress(b'<a href="/x.html">x</a>' + b" " * 50_000_000, 9),
                                       headers={"Content-Encoding": "gzip"})
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c))
    assert result.skipped() == {(c.url("/bomb.html"), "too_large")}
    assert "/x.html" not in c.paths()
