"""What an HTML page holds for the crawler: its images (with alt text), links, title, canonical URL and
robots directives. Pure parsing, no network, no policy beyond `blocks_images`.

The page is read as a stream of parser events (lxml's HTML parser with a target: no tree is built),
and at most `max_images` images and `max_links` links are kept, so a 20 MB page listing 784,000
images costs what its first few hundred cost (plus the page text itself)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

from lxml import etree

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
_TEXT_MAX = 1_000  # characters of alt text, titles and link text kept
_NOSCRIPT_MAX = 1_000_000  # characters of a <noscript> fallback kept as text that are parsed
_FEED = 65_536  # characters handed to the parser at a time


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
    more_images: bool = False  # the page shows more images than `extract` was asked to list


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


def _clean(text: str) -> str:
    """`text` with runs of whitespace made one space, at most `_TEXT_MAX` characters."""
    return " ".join(text[: _TEXT_MAX * 4].split())[:_TEXT_MAX]


class _Found:
    """Distinct raw URLs and their alt text, in order of first appearance; at most `limit` kept
    (`more` then says some were left out). A later appearance gives an empty alt text its own."""

    def __init__(self, limit: int) -> None:
        self.urls: dict[str, str] = {}
        self.limit = limit
        self.more = False

    def add(self, raw: str | None, alt: str) -> None:
        if not raw or not raw.strip():
            return
        if raw in self.urls:
            if not self.urls[raw]:
                self.urls[raw] = alt
        elif len(self.urls) < self.limit:
            self.urls[raw] = alt
        else:
            self.more = True


class _Collector:
    """lxml parser target: what `extract` needs from the stream of start, end and data events."""

    def __init__(self, max_images: int, max_links: int) -> None:
        # image sources, in the order `extract` lists them
        self.kinds = {kind: _Found(max_images) for kind in ("img", "picture", "noscript", "background",
                                                              "meta", "anchor")}
        self.links = _Found(max_links)
        self.stack: list[str] = []
        self.base: str | None = None
        self.canonical: str | None = None
        self.title: list[str] | None = None  # text of the first <title> while it is open
        self.title_text: str | None = None
        self.robots: list[str] = []
        self.meta_alts: dict[str, list[str]] = {}
        self.meta_images: dict[str, list[str]] = {}
        self.pictures: list[tuple[list[str], list[str]]] = []  # open <picture>s: (srcsets, alt of first img)
        self.anchor: tuple[str, list[str]] | None = None  # the open <a href>: (href, text and alts)
        self.noscript: list[str] | None = None  # text of the open <noscript>

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.stack.append(tag)
        if attrib and ("style" in attrib or not _BACKGROUND_ATTRIBUTES.isdisjoint(attrib)):
            self._background(attrib)
        if tag in _HANDLED:
            getattr(self, f"_{tag}")(attrib)

    def end(self, tag: str) -> None:
        if tag not in self.stack:
            return
        while self.stack and self.stack.pop() != tag:
            pass
        if tag == "title" and self.title is not None:
            self.title_text, self.title = _clean("".join(self.title)), None
        elif tag == "picture" and self.pictures:
            srcsets, alt = self.pictures.pop()
            for value in srcsets:
                for candidate in srcset_urls(value):
                    self.kinds["picture"].add(candidate, _clean(alt[0]) if alt else "")
        elif tag == "a" and self.anchor is not None:
            self._anchor_end(*self.anchor)
            self.anchor = None
        elif tag == "noscript" and self.noscript is not None:
            text, self.noscript = "".join(self.noscript), None
            if "<img" in text:
                _fallback_images(text[:_NOSCRIPT_MAX], self.kinds["noscript"])

    def data(self, text: str) -> None:
        """Text is kept in pieces, as many pieces as characters at most (titles and link text: the
        first `_TEXT_MAX`; <noscript> text: `_NOSCRIPT_MAX`), so a huge text costs nothing."""
        if self.title is not None and len(self.title) < _TEXT_MAX:
            self.title.append(text[:_TEXT_MAX])
        if self.anchor is not None and len(self.anchor[1]) < _TEXT_MAX:
            self.anchor[1].append(text[:_TEXT_MAX])
        if self.noscript is not None and len(self.noscript) < _NOSCRIPT_MAX // _FEED:
            self.noscript.append(text[:_FEED])

    def close(self) -> None:
        while self.stack:
            self.end(self.stack[-1])

    def _img(self, attrib: dict[str, str]) -> None:
        alt = _clean(attrib.get("alt") or "")
        if self.pictures and not self.pictures[-1][1]:
            self.pictures[-1][1].append(attrib.get("alt") or "")
        if self.anchor is not None and len(self.anchor[1]) < _TEXT_MAX:
            self.anchor[1].append(f" {attrib.get('alt') or ''} ")
        found = self.kinds["img"]
        lazy = [attrib[name] for name in LAZY_SRC if name in attrib]
        lazy_sets = [attrib[name] for name in LAZY_SRCSET if name in attrib]
        if not lazy and not lazy_sets:  # else `src` is the lazy loader's placeholder
            found.add(attrib.get("src"), alt)
        for raw in lazy:
            found.add(raw, alt)
        for value in [attrib.get("srcset", ""), *lazy_sets]:
            for candidate in srcset_urls(value):
                found.add(candidate, alt)

    def _picture(self, attrib: dict[str, str]) -> None:
        self.pictures.append(([], []))

    def _source(self, attrib: dict[str, str]) -> None:
        parent = next((name for name in reversed(self.stack[:-1]) if name != "source"), None)
        if parent == "picture" and self.pictures:
            self.pictures[-1][0].extend(attrib.get(name, "") for name in ("srcset", *LAZY_SRCSET))

    def _noscript(self, attrib: dict[str, str]) -> None:
        if self.noscript is None:
            self.noscript = []

    def _a(self, attrib: dict[str, str]) -> None:
        if "href" in attrib:
            self.anchor = (attrib["href"], [])

    def _anchor_end(self, href: str, text: list[str]) -> None:
        try:
            path = urlsplit(href.strip()).path
        except ValueError:
            return
        if path.lower().endswith(IMAGE_EXTENSIONS):
            self.kinds["anchor"].add(href, _clean("".join(text)))
        else:
            self.links.add(href, "")

    def _base(self, attrib: dict[str, str]) -> None:
        if self.base is None and "href" in attrib:
            self.base = attrib["href"]

    def _link(self, attrib: dict[str, str]) -> None:
        if self.canonical is None and attrib.get("rel") == "canonical" and "href" in attrib:
            self.canonical = attrib["href"]

    def _title(self, attrib: dict[str, str]) -> None:
        if self.title_text is None and self.title is None:
            self.title = []

    def _meta(self, attrib: dict[str, str]) -> None:
        content = attrib.get("content")
        if content is None:
            return
        names = {attrib.get("name"), attrib.get("property")}
        if (attrib.get("name") or "").lower() == "robots" and len(self.robots) < _MAX_META:
            self.robots.append(content[:_TEXT_MAX])
        for prop, _ in _META_IMAGES:
            if prop in names and len(images := self.meta_images.setdefault(prop, [])) < _MAX_META:
                images.append(content)
        for alt_prop in _META_ALTS & names:
            if len(alts := self.meta_alts.setdefault(alt_prop, [])) < _MAX_META:
                alts.append(content[:_TEXT_MAX])

    def _background(self, attrib: dict[str, str]) -> None:
        style = attrib.get("style", "")
        if "url(" not in style and not any(name in attrib for name in LAZY_BACKGROUND):
            return
        alt = _clean(attrib.get("aria-label") or attrib.get("title") or "")
        found = self.kinds["background"]
        for raw in background_urls(style):
            found.add(raw, alt)
        for name in LAZY_BACKGROUND:
            value = attrib.get(name, "").strip()
            for raw in css_urls(value) or [value]:
                found.add(raw, alt)

    def meta_found(self) -> _Found:
        found = self.kinds["meta"]
        for prop, alt_prop in _META_IMAGES:
            alt = _clean(" ".join(self.meta_alts.get(alt_prop, [])))
            for content in self.meta_images.get(prop, []):
                found.add(content, alt)
        return found


_HANDLED = frozenset({"img", "picture", "source", "noscript", "a", "base", "link", "title", "meta"})
_MAX_META = 100  # meta tags of one kind read
_BACKGROUND_ATTRIBUTES = frozenset(LAZY_BACKGROUND)
_META_ALTS = frozenset(alt for _, alt in _META_IMAGES)


class _FallbackImages:
    """lxml parser target for the text of a <noscript> fallback: its <img src/srcset>."""

    def __init__(self, found: _Found) -> None:
        self.found = found

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        if tag == "img":
            alt = _clean(attrib.get("alt") or "")
            self.found.add(attrib.get("src"), alt)
            for candidate in srcset_urls(attrib.get("srcset", "")):
                self.found.add(candidate, alt)

    def end(self, tag: str) -> None:
        pass

    def data(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def _fallback_images(text: str, found: _Found) -> None:
    _parse(text, _FallbackImages(found))


def _parse(html: str, target: object) -> None:
    parser = etree.HTMLParser(target=target, huge_tree=True, no_network=True)
    for at in range(0, len(html), _FEED):
        parser.feed(html[at:at + _FEED])
    try:
        parser.close()
    except etree.XMLSyntaxError:  # nothing to parse (an empty page)
        pass


def extract(html: str, *, url: str, final_url: str, status: int, x_robots_tag: str = "",
            max_images: int | None = None, max_links: int | None = None) -> Page:
    """Parse the HTML of the page fetched from `url` (landing on `final_url`).

    Images come from <img src/srcset>, <picture><source srcset>, lazy-loading attributes (`LAZY_SRC`,
    `LAZY_SRCSET` on <img> and <source>, whose `src` is then a placeholder and ignored;
    `LAZY_BACKGROUND` on any element), <noscript> fallbacks (parsed as markup or kept as text), the
    `background`/`background-image` url(...) of inline styles (alt: aria-label or title),
    og:image / twitter:image meta tags and <a href> links to image files, listed in that order
    (each kind in document order); all URLs are resolved against <base href> when there is one.
    At most `max_images` images are listed (the first ones; `more_images` says if there were more)
    and at most `max_links` links (None: no limit).
    Every image is listed (the crawler decides, with `blocks_images`, whether to index them);
    `links` is empty when the page says nofollow.
    """
    limit = sys.maxsize if max_images is None else max_images
    collector = _Collector(limit, sys.maxsize if max_links is None else max_links)
    _parse(html, collector)
    base = _absolute(final_url, collector.base) or final_url
    robots = robots_directives(",".join([*collector.robots, x_robots_tag]))
    images = _Found(limit)  # resolved URLs, the kinds in order
    for found in [*(collector.kinds[kind] for kind in ("img", "picture", "noscript", "background")),
                  collector.meta_found(), collector.kinds["anchor"]]:
        for raw, alt in found.urls.items():
            images.add(_absolute(base, raw), alt)
        images.more = images.more or found.more
    links = dict.fromkeys(link for raw in collector.links.urls if (link := _absolute(base, raw)))
    return Page(
        url=url,
        final_url=final_url,
        canonical_url=_absolute(base, collector.canonical),
        title=collector.title_text or "",
        status=status,
        robots=robots,
        images=[ImageRef(image, alt, final_url) for image, alt in images.urls.items()],
        links=[] if robots & {"nofollow", "none"} else list(links),
        more_images=images.more,
    )
