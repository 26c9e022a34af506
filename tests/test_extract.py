"""What the extractor takes for an image of a page, in the ways real pages write them, and what it
refuses to take for one. No network; the crawl itself is tests/test_crawl_images.py."""

from __future__ import annotations

from pathlib import Path

from facetrail.crawl import extract
from facetrail.crawl.extract import background_urls
from facetrail.ingest.warc import ArchivedPage

from .test_warc import Archive, date, read


def images(html: str, base: str = "https://site.example/p/") -> list[tuple[str, str]]:
    page = extract(html, url=base, final_url=base, status=200)
    return [(ref.url.removeprefix("https://site.example"), ref.alt) for ref in page.images]


def test_inline_style_backgrounds() -> None:
    assert images("""
        <div style="background-image:url(a.jpg)" title="A"></div>
        <div style='BACKGROUND: url("b;c.jpg") no-repeat, url(d.png)' aria-label="B"></div>
        <div style="background-image: image-set(url('e.avif') 1x, url(e2.jpg) 2x)"></div>
        <div style="list-style-image: url(no1.png); --hero: url(no2.jpg); mask: url(no3.svg);
                    border-image: url(no4.png) 30"></div>
        <div style="content: 'background: url(no5.jpg)'"></div>
        <div style="background: url(data:image/png;base64,iVBOR==)"></div>""") == [
        ("/p/a.jpg", "A"), ("/p/b;c.jpg", "B"), ("/p/d.png", "B"), ("/p/e.avif", ""), ("/p/e2.jpg", "")]


def test_a_broken_style_spoils_only_its_own_element() -> None:
    assert images("""<div style='background: url("a.jpg); color: red'></div>
        <div style="width: calc(1px; background-image: url(b.jpg"></div>
        <div style="background-image: url(c.jpg)"></div>""") == [("/p/c.jpg", "")]
    assert background_urls("background") == [] and background_urls("") == []


def test_only_the_start_of_a_huge_style_is_read() -> None:
    padding = "color: red; " * 2000  # 24,000 characters
    assert background_urls("background: url(first.jpg); " + padding + "background: url(late.jpg)") == [
        "first.jpg"]


def test_lazy_attributes_belong_to_images_only() -> None:
    """data-src on a lightbox link or an iframe is not an image; data-bg on any element is."""
    assert images("""
        <a href="#" data-src="#hidden-content">open</a> <iframe data-src="/video"></iframe>
        <img data-src="/real.jpg" data-srcset="/r1.jpg 1x,/r2.jpg 2x" src="/placeholder.gif" alt="R">
        <span data-bg="  /bg.jpg  "></span> <li data-background-image="url(/li.jpg)"></li>
        <img src="/plain.jpg" srcset="/plain2.jpg 2x">""") == [
        ("/real.jpg", "R"), ("/r1.jpg", "R"), ("/r2.jpg", "R"), ("/plain.jpg", ""), ("/plain2.jpg", ""),
        ("/bg.jpg", ""), ("/li.jpg", "")]


def test_noscript_fallbacks_as_markup_and_as_text() -> None:
    assert images("""<head><noscript><img src="/head.jpg" alt="H"></noscript></head>
        <img class="lazy" data-original="/x.jpg"><noscript><img src="/x.jpg" alt="X"></noscript>
        <noscript>&lt;img src="/t.jpg" srcset="/t2.jpg 2x" alt="T"&gt;</noscript>
        <noscript>no image here &lt;b&gt;</noscript>""") == [
        ("/head.jpg", "H"), ("/x.jpg", "X"), ("/t.jpg", "T"), ("/t2.jpg", "T")]


def test_archived_pages_use_the_same_extractor(tmp_path: Path) -> None:
    path = tmp_path / "lazy.warc.gz"
    archive = Archive(path, gz=True)
    archive.response("https://site.example/team.html", b"""<title>Team</title>
        <img src="/spacer.gif" data-lazy-src="/alice.jpg" alt="Alice">
        <div style="background-image: url('/hero.jpg')" aria-label="Everyone"></div>""",
                     date(1), headers=[("Content-Type", "text/html")])
    archive.close()
    items, errors = read(path)
    assert errors == []
    (page,) = [item for item in items if isinstance(item, ArchivedPage)]
    assert [(ref.url, ref.alt) for ref in page.images] == [
        ("https://site.example/alice.jpg", "Alice"), ("https://site.example/hero.jpg", "Everyone")]
