"""A crawl stored by the ingest pipeline, through the command line: every appearance it stores refers
to image bytes that were fetched and stored (issue 13 item 3). A local site on 127.0.0.1 shows one
photo on two pages and, next to it, images that cannot be stored for every reason a real site gives."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.store import Appearance, Database, Location

from .support import Route, add_accounts, as_user, serve

runner = CliRunner()
LEGAL = "press photos published by the test site, indexed for source verification"


def cli(data_dir, *args, user=None):
    return runner.invoke(app, ["--data-dir", str(data_dir), *as_user(data_dir, user), *args], catch_exceptions=False)


@pytest.fixture
def data(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_accounts(Database(f"sqlite:///{data_dir / 'facetrail.db'}"))
    return data_dir


def test_no_appearance_without_stored_bytes(data, dev_images, monkeypatch) -> None:
    face = dev_images[0].path.read_bytes()
    with serve("", "") as (web, other):
        web.routes.update({
            "/robots.txt": Route(b"User-agent: *\nDisallow: /img/blocked/\n", content_type="text/plain"),
            "/": Route.html(
                "<title>Home</title><a href='/media/1'>full size</a>"
                "<img src='/img/good.jpg' alt='good'><img src='/img/missing.jpg'><img src='/img/page.jpg'>"
                "<img src='/img/huge.jpg'><img src='/img/blocked/x.jpg'><img src='/img/broken.jpg'>"
                f"<img src='http://127.0.0.1:{other.port}/img/out.jpg'><img src='/media/1'>"
                "<a href='/two.html'>two</a>"),
            "/two.html": Route.html("<title>Two</title><img src='/img/good.jpg' alt='again'>"
                                    "<img src='/img/missing.jpg'>"),
            "/img/good.jpg": Route.image(face),
            "/media/1": Route.image(dev_images[1].path.read_bytes()),
            "/img/page.jpg": Route.html("<html>a page, not an image</html>"),
            "/img/huge.jpg": Route.image(face[:4] + bytes(700_000)),
            "/img/blocked/x.jpg": Route.image(face),
            "/img/broken.jpg": Route.image(face[: len(face) // 3]),
        })
        other.routes["/img/out.jpg"] = Route.image(face)
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        monkeypatch.setenv("FACETRAIL_FETCH_MAX_BYTES", "600000")
        added = cli(data, "source", "add", "news", "--url", web.url("/"), "--legal-basis", LEGAL, user="ada")
        assert added.exit_code == 0, added.output
        crawled = cli(data, "crawl", "news", "--workers", "1")
        assert crawled.exit_code == 0, crawled.output
    db = Database(f"sqlite:///{data / 'facetrail.db'}")
    with db.session() as session:
        shown = {(row.page_url, row.image_url, row.alt) for row in session.scalars(select(Appearance))}
        stored = set(session.scalars(select(Location.location).where(Location.image_id.is_not(None))))
    assert shown == {(web.url("/"), web.url("/img/good.jpg"), "good"),
                     (web.url("/two.html"), web.url("/img/good.jpg"), "again"),
                     (web.url("/"), web.url("/media/1"), "")}
    assert {image for _, image, _ in shown} <= stored
    for reason in ("http_status", "not_an_image", "too_large", "robots", "out_of_scope"):
        assert reason in crawled.stdout + crawled.output, (reason, crawled.output)


def test_an_unreadable_robots_txt_is_named_as_the_reason_nothing_was_crawled(data, monkeypatch) -> None:
    """The crawl of a site whose robots.txt answers 503 stores nothing and says why; it used to
    blame the site's address ("not public") though the address was allowed."""
    with serve("") as (web,):
        web.routes["/robots.txt"] = Route(b"busy", status=503, content_type="text/plain")
        web.routes["/"] = Route.html("<img src='/a.jpg'>")
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        assert cli(data, "source", "add", "news", "--url", web.url("/"), "--legal-basis", LEGAL,
                   user="ada").exit_code == 0
        crawled = cli(data, "crawl", "news", "--workers", "1")
    assert crawled.exit_code == 1
    assert "robots.txt could not be read" in crawled.output and "not public" not in crawled.output
    assert web.paths() == ["/robots.txt"]


def test_the_resume_marker_lasts_until_the_crawl_is_stored(data, monkeypatch) -> None:
    """A crawl killed after its fetching ended but before the pipeline stored what it fetched must
    be resumed next time: the marker was removed when fetching ended. Now only `stored()` (called
    by `facetrail crawl` after the ingest) removes it."""
    from facetrail.ingest.remote import crawl_feed
    from facetrail.ingest.sources import get_source

    from .support import settings_for

    with serve("") as (web,):
        web.routes["/"] = Route.html("<title>Home</title>")
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        assert cli(data, "source", "add", "news", "--url", web.url("/"), "--legal-basis", LEGAL,
                   user="ada").exit_code == 0
        settings = settings_for(data)
        db = Database(settings.db_url)
        with db.session() as session:
            source = get_source(session, "news")
        marker = settings.data_dir / "crawls" / "news.json"
        feed = crawl_feed(settings, db, source)
        produced = [element for element in feed if element is not None]  # fetched; nothing stored
        assert produced and feed.result is not None and feed.result.pages == 1
        assert marker.exists()  # a kill now: the next crawl resumes
        feed.stored()
        assert not marker.exists()
        crawled = cli(data, "crawl", "news", "--workers", "1")  # through the CLI: stored, then removed
    assert crawled.exit_code == 0, crawled.output
    assert not marker.exists()


def test_waiting_appearances_on_both_databases(settings, dev_images) -> None:
    """The pipeline alone, on SQLite and PostgreSQL: a page shown before its images is stored with
    the one whose bytes were stored (arriving after the page, and again on a second page), never
    with one whose bytes are unusable or one that was never fetched (a skip, or nothing at all)."""
    from facetrail.governance.actors import Actor
    from facetrail.index import open_index
    from facetrail.ingest import Ingestor, Item, PageRecord, Skip
    from facetrail.ingest.sources import SourceSpec, add_source

    db = Database(settings.db_url)
    with db.session() as session, session.begin():
        source = add_source(session, Actor("ada", "admin", "test"), SourceSpec(
            "site", "site", LEGAL, start_urls=("https://site.example/",)))
    face = dev_images[0].path.read_bytes()
    page = "https://site.example/"
    images = {name: f"https://site.example/{name}.jpg" for name in ("good", "broken", "missing", "never")}
    stream = [
        PageRecord(page, None, "Home", 200, tuple((url, name) for name, url in images.items())),
        Item(images["good"], len(face), data=face, status=200),
        Item(images["broken"], 100, data=face[:100], status=200),
        Skip(images["missing"], "http_status", "404", 404),
        PageRecord(page + "two", None, "Two", 200, ((images["good"], "again"),)),
    ]
    summary = Ingestor(settings, db, open_index(settings, db), source).run(stream)
    assert summary.images == 1 and summary.pages == 2
    with db.session() as session:
        shown = {(row.page_url, row.image_url, row.alt) for row in session.scalars(select(Appearance))}
    assert shown == {(page, images["good"], "good"), (page + "two", images["good"], "again")}
