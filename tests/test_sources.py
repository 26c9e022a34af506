"""Declared sources end to end, as an operator runs them: declare a site, crawl it, search, see the
pages a face appears on, re-crawl (gone images), ingest a URL list, remove a source.

The local site is served on 127.0.0.1 only; FACETRAIL_FETCH_ALLOW lets the fetcher reach exactly
its port. A second server, not on the allow list, stands for "any other loopback port".
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.store import AuditEntry, Database

from .support import SEARCH_ARGS, Route, as_user, serve

runner = CliRunner()
LEGAL = "press photos published by the test site, indexed for source verification"


def photo(dev_images, identity, n=0):
    return [d for d in dev_images if d.identity == identity][n].path


@pytest.fixture
def site(dev_images, monkeypatch):
    with serve("", "") as (web, other):
        a1, a2 = photo(dev_images, "noam_chomsky", 0), photo(dev_images, "noam_chomsky", 1)
        gates, madonna = photo(dev_images, "bill_gates", 0), photo(dev_images, "madonna", 0)
        hanks = photo(dev_images, "tom_hanks", 0)
        web.routes.update({
            "/robots.txt": Route(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain"),
            "/": Route.html(
                "<html><head><title>Front page</title>"
                "<meta property='og:image' content='/img/gates.jpg'></head><body>"
                "<img src='/img/a1.jpg' alt='Noam Chomsky at the premiere'>"
                "<a href='/team/'>team</a> <a href='/private/'>private</a> <a href='/hidden.html'>hidden</a>"
                "<a href='https://www.facebook.com/somebody'>facebook</a>"
                f"<a href='http://127.0.0.1:{other.port}/elsewhere.html'>elsewhere</a>"
                "</body></html>"),
            "/team/": Route.html(
                "<html><head><title>Our team</title></head><body>"
                "<picture><source srcset='../img/a2.jpg 1x'><img src='/img/a1.jpg' alt='again'></picture>"
                "</body></html>"),
            "/hidden.html": Route.html(
                "<html><head><title>Hidden</title><meta name='robots' content='noimageindex'></head>"
                "<body><img src='/img/madonna.jpg'></body></html>"),
            "/private/": Route.html("<html><body><img src='/img/hanks.jpg'></body></html>"),
            "/img/a1.jpg": Route.image(a1.read_bytes()),
            "/img/a2.jpg": Route.image(a2.read_bytes()),
            "/img/gates.jpg": Route.image(gates.read_bytes()),
            "/img/madonna.jpg": Route.image(madonna.read_bytes()),
            "/img/hanks.jpg": Route.image(hanks.read_bytes()),
        })
        other.routes["/elsewhere.html"] = Route.html("<html><body>out of scope</body></html>")
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        yield web, other


def cli(data_dir, *args, user=None):
    return runner.invoke(app, ["--data-dir", str(data_dir), *as_user(data_dir, user), *args], catch_exceptions=False)


def search(data_dir, query):
    result = cli(data_dir, "search", str(query), *SEARCH_ARGS, "--json", user="ivan")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def accounts(tmp_path):
    from .support import add_accounts

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    add_accounts(Database(f"sqlite:///{data_dir / 'facetrail.db'}"))
    return data_dir


def test_a_site_is_declared_crawled_searched_recrawled_and_removed(site, accounts, dev_images):
    web, other = site
    data = accounts
    refused = cli(data, "source", "add", "news", "--url", web.url("/"), "--legal-basis", "because")
    assert refused.exit_code == 2 and "legal basis" in refused.output
    social = cli(data, "source", "add", "fb", "--url", "https://www.facebook.com/x", "--legal-basis", LEGAL)
    assert social.exit_code == 2 and "excluded domain" in social.output
    added = cli(data, "source", "add", "news", "--url", web.url("/"), "--legal-basis", LEGAL, user="ada")
    assert added.exit_code == 0, added.output
    assert cli(data, "source", "add", "x", "--url", web.url("/"), "--legal-basis", LEGAL, user="ivan").exit_code == 2

    crawled = cli(data, "crawl", "news", "--workers", "1")
    assert crawled.exit_code == 0, crawled.output
    assert "3 pages" in crawled.stdout and "3 new images" in crawled.stdout, crawled.stdout
    # robots.txt, noimageindex, scope and the excluded domain were all respected
    paths = set(web.paths())
    assert paths == {"/robots.txt", "/sitemap.xml", "/", "/team/", "/hidden.html", "/img/a1.jpg", "/img/a2.jpg",
                     "/img/gates.jpg"}  # the site has no sitemap: the 404 is not reported
    assert other.log == []

    found = search(data, photo(dev_images, "noam_chomsky", 2))
    assert found["results"], found
    places = {(a["page_url"], a["page_title"], a["location"]) for r in found["results"]
              for a in r["image"]["appearances"]}
    assert (web.url("/"), "Front page", web.url("/img/a1.jpg")) in places
    assert (web.url("/team/"), "Our team", web.url("/img/a1.jpg")) in places
    assert (web.url("/team/"), "Our team", web.url("/img/a2.jpg")) in places
    first = found["results"][0]["image"]["appearances"][0]
    assert first["domain"] == "127.0.0.1" and first["source"] == "news" and first["gone"] is False
    assert first["first_seen"] and first["last_seen"]
    [group] = found["by_domain"]
    assert group["domain"] == "127.0.0.1"
    assert {page["url"] for page in group["pages"]} == {web.url("/"), web.url("/team/")}

    # the front page drops the photo; the team page disappears
    web.routes["/"] = Route.html("<html><head><title>Front page</title></head><body>"
                                 "<img src='/img/gates.jpg'><a href='/team/'>team</a></body></html>")
    del web.routes["/team/"]
    again = cli(data, "crawl", "news", "--workers", "1")
    assert again.exit_code == 0 and "0 new images" in again.stdout and "unchanged" in again.stdout, again.output
    found = search(data, photo(dev_images, "noam_chomsky", 2))
    appearances = [a for r in found["results"] for a in r["image"]["appearances"]]
    assert appearances and all(a["gone"] for a in appearances), appearances
    gates = search(data, photo(dev_images, "bill_gates", 1))
    assert any(not a["gone"] for r in gates["results"] for a in r["image"]["appearances"])

    shown = cli(data, "source", "show", "news", "--json")
    assert shown.exit_code == 0
    info = json.loads(shown.stdout)
    assert info["legal_basis"] == LEGAL and info["counts"]["images"] == 3 and info["last_run_at"]

    assert cli(data, "source", "suspend", "news", user="ada").exit_code == 0
    suspended = cli(data, "crawl", "news")
    assert suspended.exit_code == 2 and "suspended" in suspended.output

    removed = cli(data, "source", "remove", "news", "--yes", user="ada")
    assert removed.exit_code == 0 and "3 images" in removed.stdout, removed.output
    assert search(data, photo(dev_images, "noam_chomsky", 2))["results"] == []
    with Database(f"sqlite:///{data / 'facetrail.db'}").session() as session:
        actions = list(session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("source.%")).order_by(AuditEntry.id)))
    assert actions == ["source.add", "source.suspend", "source.remove"]


def test_url_list_ingest_follows_the_safety_rules(site, accounts, dev_images, tmp_path):
    web, other = site
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join([
        "# press photos",
        web.url("/img/a1.jpg"),
        web.url("/img/a1.jpg"),  # listed twice, fetched once
        web.url("/img/missing.jpg"),
        web.url("/team/"),  # a page, not an image
        f"http://127.0.0.1:{other.port}/photo.jpg",  # a loopback port not on the allow list
        "https://www.facebook.com/photo.jpg",  # an excluded domain: never resolved
        "file:///etc/passwd",
    ]) + "\n")
    result = cli(accounts, "ingest", "urls", str(listing), "--source", "list", "--workers", "1")
    assert result.exit_code == 2 and "legal-basis" in result.output
    result = cli(accounts, "ingest", "urls", str(listing), "--source", "list", "--legal-basis", LEGAL,
                 "--workers", "1", "--verbose")
    assert result.exit_code == 0, result.output
    assert "1 new images" in result.stdout
    for reason in ("http_status", "not_an_image", "refused_address", "excluded_domain", "bad_url"):
        assert reason in result.stdout, (reason, result.stdout)
    assert web.paths() == ["/robots.txt", "/img/a1.jpg", "/img/missing.jpg", "/team/"]  # robots.txt obeyed
    assert other.log == []
    found = search(accounts, photo(dev_images, "noam_chomsky", 2))
    [appearance] = found["results"][0]["image"]["appearances"]
    assert appearance["location"] == web.url("/img/a1.jpg") and appearance["page_url"] is None
    assert appearance["source"] == "list" and appearance["kind"] == "urls"


def test_web_archives_give_pages_images_and_capture_dates(accounts, dev_images, tmp_path):
    from io import BytesIO

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    archive = tmp_path / "crawl.warc.gz"
    page = (b"<html><head><title>Archived team page</title></head><body>"
            b"<img src='/img/chomsky.jpg' alt='Noam Chomsky'><img src='/img/missing.jpg'></body></html>")
    with archive.open("wb") as out:
        writer = WARCWriter(out, gzip=True)

        def response(url, body, content_type, date):
            headers = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                url, "response", payload=BytesIO(body), http_headers=headers,
                warc_headers_dict={"WARC-Date": date}))

        response("http://archived.example/team.html", page, "text/html", "2019-03-04T05:06:07Z")
        response("http://archived.example/img/chomsky.jpg", photo(dev_images, "noam_chomsky", 0).read_bytes(),
                 "image/jpeg", "2019-03-04T05:06:09Z")
        response("https://www.facebook.com/x.jpg", photo(dev_images, "madonna", 0).read_bytes(),
                 "image/jpeg", "2019-03-04T05:06:10Z")
    result = cli(accounts, "ingest", "warc", str(archive), "--source", "archive", "--legal-basis", LEGAL,
                 "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "1 pages" in result.stdout and "1 new images" in result.stdout and "1 excluded_domain" in result.stdout
    found = search(accounts, photo(dev_images, "noam_chomsky", 2))
    [appearance] = found["results"][0]["image"]["appearances"]
    assert appearance["page_url"] == "http://archived.example/team.html"
    assert appearance["page_title"] == "Archived team page" and appearance["alt"] == "Noam Chomsky"
    assert appearance["first_seen"].startswith("2019-03-04T05:06:07")
    assert appearance["source"] == "archive" and appearance["kind"] == "warc"


def test_an_interrupted_crawl_resumes_without_fetching_stored_images_again(site, accounts):
    web, _ = site
    assert cli(accounts, "source", "add", "news", "--url", web.url("/"), "--legal-basis", LEGAL,
               user="ada").exit_code == 0
    marker = accounts / "crawls" / "news.json"
    # a crawl that stores the front page's images and is then killed leaves its marker behind
    first = cli(accounts, "crawl", "news", "--max-pages", "1", "--workers", "1")
    assert first.exit_code == 0 and "2 new images" in first.stdout, first.output
    assert not marker.exists()  # it finished
    marker.parent.mkdir(exist_ok=True)
    marker.write_text('{"started": "2000-01-01T00:00:00+00:00"}')  # as a killed crawl leaves it
    web.log.clear()
    resumed = cli(accounts, "crawl", "news", "--workers", "1")
    assert resumed.exit_code == 0 and "Resumed an interrupted crawl: 2 images" in resumed.stdout, resumed.output
    assert "/img/a1.jpg" not in web.paths() and "/img/gates.jpg" not in web.paths()
    assert "/img/a2.jpg" in web.paths()  # new work is done
    assert not marker.exists()
    web.log.clear()
    assert cli(accounts, "crawl", "news", "--workers", "1").exit_code == 0
    assert "/img/a1.jpg" in web.paths()  # a new crawl fetches everything again


def test_the_per_page_image_cap_is_a_setting(site, accounts, monkeypatch):
    """FACETRAIL_CRAWL_MAX_IMAGES_PER_PAGE reaches the crawl: the front page lists two images (one
    <img>, one og:image); with a cap of 1 only the first is fetched, the other is reported."""
    web, _ = site
    monkeypatch.setenv("FACETRAIL_CRAWL_MAX_IMAGES_PER_PAGE", "1")
    assert cli(accounts, "source", "add", "news", "--url", web.url("/"), "--legal-basis", LEGAL,
               "--max-depth", "0", user="ada").exit_code == 0
    crawled = cli(accounts, "crawl", "news", "--workers", "1")
    assert crawled.exit_code == 0, crawled.output
    assert "1 too_many_images" in crawled.stdout, crawled.stdout
    assert "/img/a1.jpg" in web.paths() and "/img/gates.jpg" not in web.paths()


def test_the_crawl_says_when_its_image_budget_stopped_it(site, accounts, monkeypatch):
    web, _ = site
    monkeypatch.setenv("FACETRAIL_CRAWL_MAX_IMAGES", "1")
    assert cli(accounts, "source", "add", "news", "--url", web.url("/"), "--legal-basis", LEGAL,
               user="ada").exit_code == 0
    crawled = cli(accounts, "crawl", "news", "--workers", "1")
    assert crawled.exit_code == 0, crawled.output
    assert "image budget was reached" in crawled.stdout and "FACETRAIL_CRAWL_MAX_IMAGES" in crawled.stdout
