"""Images a real site shows in ways other than a plain <img src>: lazy-loading attributes, <noscript>
fallbacks, inline-style backgrounds, and image URLs without a file extension. A real Scrapy crawl
against a local server on 127.0.0.1 (the guard and fetcher of tests/test_crawl.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from facetrail.crawl import extract

from .support import Route, Site, image_bytes, serve
from .test_crawl import Guard, Run, fetcher_for, run, scope_of
from .test_crawl import guard as guard  # noqa: PLC0414 - the module's network guard fixture

PLACEHOLDER = image_bytes("gray", "GIF", (1, 1))


def lazy_site(site: Site) -> dict[str, bytes]:
    """Pages written the way common lazy-loading scripts want them; the image URLs a visitor's
    browser ends up showing, with their bytes."""
    images = {path: image_bytes(color) for path, color in [
        ("/img/logo.jpg", "red"), ("/img/ls1.jpg", "green"), ("/img/ls2-480.jpg", "blue"),
        ("/img/ls2-960.jpg", "yellow"), ("/img/ls3.webp", "white"), ("/img/ls3.jpg", "black"),
        ("/img/ls-bg.jpg", "purple"), ("/img/jq1.jpg", "orange"), ("/img/wp1.jpg", "pink"),
        ("/img/wp1-2x.jpg", "brown"), ("/img/hero.jpg", "cyan"), ("/img/banner.png", "magenta"),
        ("/img/ns.jpg", "olive"), ("/img/ns-text.jpg", "navy"), ("/media/1042", "teal")]}
    pixel = "data:image/gif;base64,R0lGODlhAQABAAAAACw="
    site.routes.update({
        "/": Route.html("""<title>Home</title><img src="/img/logo.jpg" alt="Logo">
            <a href="/media/1042">full size</a> <a href="/lazysizes.html">1</a>
            <a href="/jquery.html">2</a> <a href="/wprocket.html">3</a> <a href="/hero.html">4</a>
            <a href="/noscript.html">5</a> <a href="/gallery.html">6</a>"""),
        # lazysizes: data-src / data-srcset on <img> and <source>, data-bg on any element
        "/lazysizes.html": Route.html(f"""
            <img class="lazyload" src="{pixel}" data-src="/img/ls1.jpg" alt="LS one">
            <img class="lazyload" data-srcset="/img/ls2-480.jpg 480w, /img/ls2-960.jpg 960w"
                 data-sizes="auto" alt="LS two">
            <picture><source type="image/webp" data-srcset="/img/ls3.webp">
              <img class="lazyload" data-src="/img/ls3.jpg" alt="LS three"></picture>
            <div class="lazyload" data-bg="url('/img/ls-bg.jpg')" title="Background"></div>"""),
        # jQuery lazyload: data-original, a shared grey placeholder in src, a <noscript> fallback
        "/jquery.html": Route.html("""
            <img class="lazy" src="/img/grey.gif" data-original="/img/jq1.jpg" alt="">
            <noscript><img src="/img/jq1.jpg" alt="JQ one"></noscript>"""),
        # WP Rocket: data-lazy-src / data-lazy-srcset, an inline SVG placeholder
        "/wprocket.html": Route.html("""
            <img src="data:image/svg+xml,%3Csvg%3E%3C/svg%3E" data-lazy-src="/img/wp1.jpg"
                 data-lazy-srcset="/img/wp1-2x.jpg 2x" alt="WP one">"""),
        # backgrounds in inline styles
        "/hero.html": Route.html("""
            <div class="hero" style="min-height: 50vh; background-image: url('/img/hero.jpg')"
                 aria-label="Our team"></div>
            <section style="color: #fff; background: #000 url(/img/banner.png) center / cover no-repeat">
            </section>"""),
        # fallbacks only: one parsed as markup, one a script left as escaped text
        "/noscript.html": Route.html("""
            <noscript><img src="/img/ns.jpg" alt="NS"></noscript>
            <noscript>&lt;img src="/img/ns-text.jpg" alt="NS text"&gt;</noscript>"""),
        # an image URL with no extension, which the home page links to first
        "/gallery.html": Route.html('<img src="/media/1042" alt="In the gallery">'),
        "/img/grey.gif": Route.image(PLACEHOLDER, "image/gif"),
        **{path: Route.image(data) for path, data in images.items()},
    })
    return images


@pytest.fixture(scope="module")
def lazy(guard: Guard) -> Iterator[tuple[Site, dict[str, bytes], Run]]:
    with serve("c.test") as (c,):
        images = lazy_site(c)
        yield c, images, run([c.url("/")], scope_of(c), fetcher_for(guard, c), max_depth=2)


def test_lazy_images_are_found_and_fetched(lazy: tuple[Site, dict[str, bytes], Run]) -> None:
    c, images, result = lazy
    assert {image.url: image.body for image in result.images} == {
        c.url(path): data for path, data in images.items()}
    assert len(result.images) == len(images) == result.summary.images == 15


def test_lazy_images_keep_their_alt_text(lazy: tuple[Site, dict[str, bytes], Run]) -> None:
    c, _, result = lazy
    alts = {ref.url: ref.alt for page in result.pages for ref in page.images}
    assert {path: alts[c.url(path)] for path in [
        "/img/ls1.jpg", "/img/ls2-960.jpg", "/img/ls3.webp", "/img/ls3.jpg", "/img/ls-bg.jpg",
        "/img/jq1.jpg", "/img/wp1-2x.jpg", "/img/hero.jpg", "/img/banner.png", "/img/ns-text.jpg"]} == {
        "/img/ls1.jpg": "LS one", "/img/ls2-960.jpg": "LS two", "/img/ls3.webp": "LS three",
        "/img/ls3.jpg": "LS three", "/img/ls-bg.jpg": "Background", "/img/jq1.jpg": "JQ one",
        "/img/wp1-2x.jpg": "WP one", "/img/hero.jpg": "Our team", "/img/banner.png": "",
        "/img/ns-text.jpg": "NS text"}


def test_placeholders_are_not_images_of_the_page(lazy: tuple[Site, dict[str, bytes], Run]) -> None:
    """A lazy loader's placeholder (in `src` next to data-src...) is never fetched nor listed."""
    c, _, result = lazy
    assert "/img/grey.gif" not in c.paths()
    assert all(not ref.url.endswith("grey.gif") for page in result.pages for ref in page.images)


def test_every_appearance_refers_to_fetched_bytes(lazy: tuple[Site, dict[str, bytes], Run]) -> None:
    """Each image a page lists was fetched (on_image) or reported with a reason; here all fetched."""
    _, _, result = lazy
    fetched = {image.url for image in result.images}
    shown = {ref.url for page in result.pages for ref in page.images}
    assert shown == fetched


def test_extensionless_image_reached_first_by_a_link_is_fetched(
        lazy: tuple[Site, dict[str, bytes], Run]) -> None:
    """The link fetches /media/1042 as a page (not HTML: skipped as such); the gallery's <img> of
    the same URL is still fetched as an image: pages and images are deduplicated separately."""
    c, images, result = lazy
    assert result.skipped() == {(c.url("/media/1042"), "not_html")}
    media = next(image for image in result.images if image.url == c.url("/media/1042"))
    assert (media.body, media.page_url, media.alt) == (
        images["/media/1042"], c.url("/gallery.html"), "In the gallery")
    assert Counter(c.paths())["/media/1042"] == 2  # once as a page, once as an image
    assert Counter(c.paths()) - Counter({"/media/1042": 1}) == Counter(set(c.paths()))  # no other twice


def test_a_page_shown_as_an_image_first_is_still_crawled_as_a_page(guard: Guard) -> None:
    """An <img> pointing at an HTML page does not stop a link to that page from being followed."""
    photo = image_bytes("red")
    with serve("c.test") as (c,):
        c.routes.update({
            "/": Route.html('<img src="/about"><a href="/about">about</a>'),
            "/about": Route.html('<title>About</title><img src="/team.jpg" alt="Team">'),
            "/team.jpg": Route.image(photo)})
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c))
    assert {page.final_url for page in result.pages} == {c.url("/"), c.url("/about")}
    assert [(image.url, image.body) for image in result.images] == [(c.url("/team.jpg"), photo)]
    assert result.skipped() == {(c.url("/about"), "not_an_image")}


def test_images_per_page_are_capped(guard: Guard) -> None:
    """A page listing more images than the cap (500) gets its first 500 fetched and listed (<img>s in
    document order first); the rest are reported once, never requested."""
    photo = image_bytes("red")
    with serve("c.test") as (c,):
        c.routes["/"] = Route.html("".join(f'<img src="/i/{n}.jpg" alt="{n}">' for n in range(520)))
        c.routes.update({f"/i/{n}.jpg": Route.image(photo) for n in range(520)})
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c))
    (page,) = result.pages
    assert [ref.alt for ref in page.images] == [str(n) for n in range(500)]
    assert {image.url for image in result.images} == {c.url(f"/i/{n}.jpg") for n in range(500)}
    assert sorted(c.paths()) == sorted(["/robots.txt", "/", *(f"/i/{n}.jpg" for n in range(500))])
    assert [(url, reason) for url, reason, _ in result.errors] == [(c.url("/"), "too_many_images")]
    assert "only the first 500 images" in result.errors[0][2]


def test_the_cap_is_a_crawl_option(guard: Guard) -> None:
    photo = image_bytes("red")
    with serve("c.test") as (c,):
        c.routes["/"] = Route.html('<img src="/1.jpg"><div style="background: url(/2.jpg)"></div>'
                                   '<img data-src="/3.jpg">')
        c.routes.update({f"/{n}.jpg": Route.image(photo) for n in (1, 2, 3)})
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c), max_images_per_page=2)
    assert sorted(image.url for image in result.images) == [c.url("/1.jpg"), c.url("/3.jpg")]
    assert "/2.jpg" not in c.paths() and result.summary.skipped == {"too_many_images": 1}


def test_the_crawl_has_an_image_budget(guard: Guard) -> None:
    """Once a crawl has requested its budget of images, new images of later pages are neither
    requested nor listed on their page (no appearance without bytes); images met before still are."""
    photo = image_bytes("red")
    with serve("c.test") as (c,):
        c.routes["/"] = Route.html('<img src="/1.jpg"><img src="/2.jpg"><a href="/next.html">next</a>')
        c.routes["/next.html"] = Route.html('<img src="/3.jpg"><img src="/1.jpg"><img src="/4.jpg">')
        c.routes.update({f"/{n}.jpg": Route.image(photo) for n in (1, 2, 3, 4)})
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c), max_images=3)
    assert sorted(image.url for image in result.images) == [c.url(f"/{n}.jpg") for n in (1, 2, 3)]
    assert "/4.jpg" not in c.paths()
    shown = {page.final_url: [ref.url for ref in page.images] for page in result.pages}
    assert shown[c.url("/next.html")] == [c.url("/3.jpg"), c.url("/1.jpg")]
    assert result.skipped() == {(c.url("/next.html"), "image_budget")}
    assert result.summary.budget_reached and not result.summary.limit_reached


def test_a_huge_page_lists_its_first_images_only() -> None:
    """The extractor stops keeping images and links at its limits (a 20 MB page of 784,000 images
    costs no more than its first ones: bench/crawl.py --huge-page measures it)."""
    html = "".join(f'<img src="/i/{n}.jpg"><a href="/p/{n}.html">{n}</a>' for n in range(5000))
    page = extract(html, url="http://c.test/", final_url="http://c.test/", status=200, max_images=10,
                   max_links=20)
    assert [ref.url for ref in page.images] == [f"http://c.test/i/{n}.jpg" for n in range(10)]
    assert page.links == [f"http://c.test/p/{n}.html" for n in range(20)] and page.more_images
    assert not extract(html, url="http://c.test/", final_url="http://c.test/", status=200).more_images


def _urlset(*entries: tuple[str, str | None]) -> bytes:
    urls = "".join(f"<url><loc>{loc}</loc>{f'<lastmod>{mod}</lastmod>' if mod else ''}</url>"
                   for loc, mod in entries)
    return (f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/'
            f'sitemap/0.9">{urls}</urlset>').encode()


def test_sitemaps_are_start_points(guard: Guard) -> None:
    """Pages no link reaches are found through /sitemap.xml and the robots.txt Sitemap: line (an
    index pointing at a gzip file), as start points (depth 0), newest lastmod first, within scope
    and the page limit; an out-of-scope entry is refused like a link."""
    import gzip

    photo = image_bytes("red")
    with serve("c.test", "out.test") as (c, out):
        c.routes.update({
            "/robots.txt": Route(f"User-agent: *\nDisallow: /private/\nSitemap: {c.url('/maps/index.xml')}\n"
                                 .encode(), content_type="text/plain"),
            "/": Route.html("<title>Home</title>"),
            "/sitemap.xml": Route(_urlset((c.url("/old.html"), "2019-01-01"), (c.url("/new.html"), "2024-05-01"),
                                          (out.url("/elsewhere.html"), None)), content_type="application/xml"),
            "/maps/index.xml": Route(
                (f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                 f'<sitemap><loc>{c.url("/maps/a.xml.gz")}</loc></sitemap></sitemapindex>').encode(),
                content_type="application/xml"),
            "/maps/a.xml.gz": Route(gzip.compress(_urlset((c.url("/hidden.html"), None),
                                                          (c.url("/private/p.html"), None))),
                                    content_type="application/gzip"),
            "/old.html": Route.html('<img src="/old.jpg"><a href="/deeper.html">deeper</a>'),
            "/new.html": Route.html('<img src="/new.jpg">'),
            "/hidden.html": Route.html('<img src="/hidden.jpg">'),
            "/old.jpg": Route.image(photo), "/new.jpg": Route.image(photo), "/hidden.jpg": Route.image(photo),
        })
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c), max_depth=0, sitemaps=True,
                     concurrency=1)  # one at a time: the order of requests shows
    assert {page.final_url for page in result.pages} == {
        c.url(path) for path in ("/", "/old.html", "/new.html", "/hidden.html")}
    assert {image.url for image in result.images} == {c.url(p) for p in ("/old.jpg", "/new.jpg", "/hidden.jpg")}
    assert c.paths().index("/new.html") < c.paths().index("/old.html")  # newest lastmod first
    assert "/deeper.html" not in c.paths() and out.log == []  # depth 0; the scope holds
    assert result.skipped() == {(out.url("/elsewhere.html"), "out_of_scope"), (c.url("/private/p.html"), "robots")}


def test_sitemap_pages_count_against_the_page_limit(guard: Guard) -> None:
    with serve("c.test") as (c,):
        c.routes["/"] = Route.html("home")
        c.routes["/sitemap.xml"] = Route(_urlset(*((c.url(f"/{n}.html"), None) for n in range(50))),
                                         content_type="application/xml")
        c.routes.update({f"/{n}.html": Route.html("page") for n in range(50)})
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c), max_pages=5, sitemaps=True)
    assert result.summary.pages == 5 and result.summary.limit_reached


def count_image_requests(monkeypatch) -> list[str]:
    """The URLs of the image requests the spider makes from now on (in order), with at most 3 at once."""
    from facetrail.crawl import spider

    made: list[str] = []

    class Counted(spider.Request):
        def __init__(self, url, *args, **kwargs) -> None:
            super().__init__(url, *args, **kwargs)
            if (kwargs.get("meta") or {}).get("image"):
                made.append(url)

    monkeypatch.setattr(spider, "Request", Counted)
    monkeypatch.setattr(spider, "MAX_IMAGE_REQUESTS", 3)
    return made


def test_image_requests_are_made_as_earlier_ones_finish(guard: Guard, monkeypatch) -> None:
    """A page's images wait as plain data and become requests a few at a time (MAX_IMAGE_REQUESTS,
    3 here), as earlier ones finish, failed ones included; none is lost or requested twice. Before,
    every image of every page was a queued request at once."""
    made = count_image_requests(monkeypatch)
    photo = image_bytes("red")
    with serve("c.test") as (c,):
        c.routes["/"] = Route.html("".join(f'<img src="/i/{n}.jpg">' for n in range(40)))
        c.routes.update({f"/i/{n}.jpg": Route.image(photo) for n in range(0, 40, 2)})  # odd ones: 404
        result = run([c.url("/")], scope_of(c), fetcher_for(guard, c), concurrency=1)
    assert sorted(made) == sorted(c.url(f"/i/{n}.jpg") for n in range(40))  # each once
    assert len(result.images) == 20 and result.summary.skipped == {"http_status": 20}
    assert sorted(path for path in c.paths() if path.startswith("/i/")) == sorted(f"/i/{n}.jpg" for n in range(40))


def test_at_most_a_few_image_requests_exist_at_once(guard: Guard, monkeypatch) -> None:
    """When the n-th image is fetched, at most n - 1 + 3 image requests have been made."""
    made = count_image_requests(monkeypatch)
    seen_when_fetched: list[int] = []
    photo = image_bytes("red")
    with serve("c.test") as (c,):
        c.routes["/"] = Route.html("".join(f'<img src="/i/{n}.jpg">' for n in range(40)))
        c.routes.update({f"/i/{n}.jpg": Route.image(photo) for n in range(40)})
        from facetrail.crawl import crawl

        crawl([c.url("/")], scope_of(c), fetcher_for(guard, c), delay=0, concurrency=1, sitemaps=False,
              on_image=lambda image: seen_when_fetched.append(len(made)))
    assert len(made) == 40 and len(seen_when_fetched) == 40
    assert max(made_then - done for done, made_then in enumerate(seen_when_fetched)) <= 3


def test_hostile_sitemaps_are_refused_or_harmless() -> None:
    """A gzip bomb is refused once inflated past the size limit; an external entity is never read
    (no /etc/passwd in a URL); HTML or garbage is no sitemap."""
    import gzip

    from facetrail.crawl.sitemaps import sitemap_entries

    bomb = gzip.compress(b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">' + b" " * 50_000_000
                         + b"</urlset>", 9)
    assert sitemap_entries(bomb, 1_000_000) is None
    xxe = (b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://c.test/&x;</loc>'
           b'</url></urlset>')
    found = sitemap_entries(xxe, 1_000_000)
    assert found is None or all("root:" not in location for location in found[1])
    assert sitemap_entries(b"<html><body>not a sitemap</body></html>", 1000) is None
    assert sitemap_entries(b"\x1f\x8bgarbage", 1000) is None
