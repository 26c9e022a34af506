"""What an HTML page holds for the crawler: its images (with alt text), links, title, canonical URL and
robots directives. Pure parsing (parsel selectors), no network, no policy beyond `blocks_images`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

from parsel import Selector

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".avif",
                    ".heic", ".heif")
# Directives that forbid indexing a page's images; "none" means "noindex, nofollow".
IMAGE_BLOCKING = frozenset({"noindex", "none", "noimageindex", "noai", "noimageai"})
# The meta tags images come from, with the meta tag holding their alt text.
_META_IMAGES = [("og:image", "og:image:alt"), ("og:image:url", "og:image:alt"),
                ("og:image:secure_url", "og:image:alt"), ("twitter:image", "twitter:image:alt"),
                ("twitter:image:src", "twitter:image:alt")]
_SRCSET_URL = re.compile(r"[\s,]*([^\s,][^\s]*)")
# Attributes lazy-loading scripts (lazysizes, jQuery lazyload, WP Rocket, WordPress plugins...) move the
# real image to; an <img> carrying one has a placeholder in `src`, which is not an image of the page.
LAZY_SRC = ("data-src", "data-lazy-src", "data-original", "data-lazy")
LAZY_SRCSET = ("data-srcset", "data-lazy-srcset")
# Attributes holding a lazily loaded background image (a URL or url(...)), on any element.
LAZY_BACKGROUND = ("data-bg", "data-background-image")
# One declaration of an inline style; quoted strings and parentheses may hold ";". Linear: every
# alternative starts with a different character and a lone quote or parenthesis is an ordinary one.
_DECLARATION = re.compile(r"""\s*([-\w]+)\s*:((?:[^;"'(]|"[^"]*"|'[^']*'|\([^)]*\)|["'(])*)(?:;|$)""")
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)"'\s]*))\s*\)""", re.IGNORECASE)
_STYLE_MAX = 10_000  # characters of one style attribute looked at


@dataclass(frozen=True)
class ImageRef:
    """One image shown (or linked) on a page."""

    url: str  # absolute, without fragment
    alt: str  # alt text ("" if none)
    page_url: str  # the final URL of the page it appears on


@dataclass(frozen=True)
class Page:
    """A fetched HTML page."""

    url: str  # as requested
    final_url: str  # after redirects
    canonical_url: str | None  # <link rel=canonical>, absolute
    title: str
    status: int
    robots: frozenset[str]  # directives of <meta name=robots> and the X-Robots-Tag header
    images: list[ImageRef]
    links: list[str]  # absolute http(s) links to follow (not image files), without fragments


def robots_directives(value: str) -> frozenset[str]:
    """Directives of a robots meta tag or X-Robots-Tag value, lower case.

    A user-agent scoped directive ("googlebot: noindex") counts whatever agent it names: honouring an
    opt-out meant for another crawler errs on the safe side.
    """
    tokens = (token.rsplit(":", 1)[-1].strip().lower() for token in value.split(","))
    return frozenset(token for token in tokens if token)


def blocks_images(robots: frozenset[str]) -> bool:
    """True if the directives forbid indexing images (noindex, noimageindex, noai, noimageai...)."""
    return not robots.isdisjoint(IMAGE_BLOCKING)


def srcset_urls(value: str) -> list[str]:
    """The URLs of a srcset attribute ("a.jpg 1x, b.jpg 2x" or "a.jpg 480w, b.jpg 800w")."""
    urls, pos = [], 0
    while match := _SRCSET_URL.match(value, pos):
        url = match.group(1)
        if url.endswith(","):  # a URL directly followed by the next candidate
            urls.append(url.rstrip(","))
            pos = match.end()
            continue
        urls.append(url)
        comma = value.find(",", match.end())  # skip the descriptors
        pos = len(value) if comma < 0 else comma + 1
    return urls


def css_urls(value: str) -> list[str]:
    """The url(...) values in CSS text ("url(a.jpg)", "url('a.jpg')", image-set(url(a) 1x, ...))."""
    return [next(group for group in match.groups() if group is not None) for match in _CSS_URL.finditer(value)]


def background_urls(style: str) -> list[str]:
    """The image URLs of the `background` and `background-image` declarations of an inline style."""
    return [url for match in _DECLARATION.finditer(style[:_STYLE_MAX])
            if match.group(1).lower() in ("background", "background-image")
            for url in css_urls(match.group(2))]


def _absolute(base: str, url: str | None) -> str | None:
    """`url` resolved against `base`, without fragment; None unless it is http(s)."""
    if not url or not url.strip():
        return None
    try:
        resolved = urldefrag(urljoin(base, url.strip())).url
        scheme = urlsplit(resolved).scheme
    except ValueError:
        return None
    return resolved if scheme in ("http", "https") else None


def _text(selector: Selector, query: str) -> str:
    return " ".join(" ".join(selector.xpath(query).getall()).split())


def extract(html: str, *, url: str, final_url: str, status: int, x_robots_tag: str = "") -> Page:
    """Parse the HTML of the page fetched from `url` (landing on `final_url`).

    Images come from <img src/srcset>, <picture><source srcset>, lazy-loading attributes (`LAZY_SRC`,
    `LAZY_SRCSET` on <img> and <source>, whose `src` is then a placeholder and ignored;
    `LAZY_BACKGROUND` on any element), <noscript> fallbacks (parsed as markup or kept as text), the
    `background`/`background-image` url(...) of inline styles (alt: aria-label or title),
    og:image / twitter:image meta tags and <a href> links to image files; all URLs are resolved
    against <base href> when there is one.
    Every image is listed (the crawler decides, with `blocks_images`, whether to index them);
    `links` is empty when the page says nofollow.
    """
    root = Selector(text=html)
    base = _absolute(final_url, root.xpath("//base/@href").get()) or final_url
    robots = robots_directives(",".join([
        *root.xpath("//meta[translate(@name, 'ROBTS', 'robts')='robots']/@content").getall(),
        x_robots_tag]))

    found: dict[str, str] = {}  # image URL -> alt, in document order

    def add(raw: str | None, alt: str) -> None:
        if (image := _absolute(base, raw)) and not found.get(image):
            found[image] = alt

    for img in root.xpath("//img"):
        alt = " ".join((img.attrib.get("alt") or "").split())
        attrib = img.attrib
        lazy = [attrib[name] for name in LAZY_SRC if name in attrib]
        lazy_sets = [attrib[name] for name in LAZY_SRCSET if name in attrib]
        if not lazy and not lazy_sets:  # else `src` is the lazy loader's placeholder
            add(attrib.get("src"), alt)
        for raw in lazy:
            add(raw, alt)
        for value in [attrib.get("srcset", ""), *lazy_sets]:
            for candidate in srcset_urls(value):
                add(candidate, alt)
    for source in root.xpath("//picture/source"):
        alt = _text(source, "(ancestor::picture[1]//img)[1]/@alt")
        for name in ("srcset", *LAZY_SRCSET):
            for candidate in srcset_urls(source.attrib.get(name, "")):
                add(candidate, alt)
    for noscript in root.xpath("//noscript[contains(., '<img')]"):  # fallbacks kept as text
        fallback = Selector(text=_text(noscript, ".//text()"))
        for img in fallback.xpath("//img"):
            alt = " ".join((img.attrib.get("alt") or "").split())
            add(img.attrib.get("src"), alt)
            for candidate in srcset_urls(img.attrib.get("srcset", "")):
                add(candidate, alt)
    backgrounds = " or ".join(f"@{name}" for name in LAZY_BACKGROUND)
    for element in root.xpath(f"//*[contains(@style, 'url(') or {backgrounds}]"):
        alt = " ".join((element.attrib.get("aria-label") or element.attrib.get("title") or "").split())
        for raw in background_urls(element.attrib.get("style", "")):
            add(raw, alt)
        for name in LAZY_BACKGROUND:
            value = element.attrib.get(name, "").strip()
            for raw in css_urls(value) or [value]:
                add(raw, alt)
    for prop, alt_prop in _META_IMAGES:
        alt = _text(root, f"//meta[@property='{alt_prop}' or @name='{alt_prop}']/@content")
        for content in root.xpath(f"//meta[@property='{prop}' or @name='{prop}']/@content").getall():
            add(content, alt)

    links: dict[str, None] = {}  # an ordered set
    for anchor in root.xpath("//a[@href]"):
        target = _absolute(base, anchor.attrib["href"])
        if target is None:
            continue
        if urlsplit(target).path.lower().endswith(IMAGE_EXTENSIONS):
            add(target, _text(anchor, ".//text() | .//img/@alt"))
        else:
            links[target] = None

    return Page(
        url=url,
        final_url=final_url,
        canonical_url=_absolute(base, root.xpath("//link[@rel='canonical']/@href").get()),
        title=_text(root, "(//title)[1]//text()"),
        status=status,
        robots=robots,
        images=[ImageRef(image, alt, final_url) for image, alt in found.items()],
        links=[] if robots & {"nofollow", "none"} else list(links),
    )
