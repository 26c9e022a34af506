"""`facetrail ingest urls` obeys robots.txt as the crawler does (issue 13 item 10), unless the source
was declared with --ignore-robots REASON, which the audit log records. A local site on 127.0.0.1."""

from __future__ import annotations

from sqlalchemy import select

from facetrail.store import AuditEntry, Database

from .support import Route, serve
from .test_crawl_store import LEGAL, cli
from .test_crawl_store import data as data  # noqa: PLC0414 - the data folder fixture


def _site(web, face: bytes, robots: Route) -> None:
    web.routes.update({"/robots.txt": robots, "/img/a.jpg": Route.image(face),
                       "/private/b.jpg": Route.image(face)})


def _listing(tmp_path, web):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{web.url('/img/a.jpg')}\n{web.url('/private/b.jpg')}\n")
    return listing


def test_url_lists_obey_robots_txt(data, tmp_path, dev_images, monkeypatch) -> None:
    with serve("") as (web,):
        _site(web, dev_images[0].path.read_bytes(),
              Route(b"User-agent: FaceTrail/0.1\nDisallow: /private/\n", content_type="text/plain"))
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        result = cli(data, "ingest", "urls", str(_listing(tmp_path, web)), "--source", "list",
                     "--legal-basis", LEGAL, "--workers", "1", "--verbose", user="ada")
    assert result.exit_code == 0, result.output
    assert web.paths() == ["/robots.txt", "/img/a.jpg"]  # robots.txt read once; /private/ never asked
    assert "1 new images" in result.stdout and "1 robots" in result.stdout


def test_an_unreadable_robots_txt_leaves_the_host_alone(data, tmp_path, dev_images, monkeypatch) -> None:
    with serve("") as (web,):
        _site(web, dev_images[0].path.read_bytes(), Route(b"oops", status=500, content_type="text/plain"))
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        result = cli(data, "ingest", "urls", str(_listing(tmp_path, web)), "--source", "list",
                     "--legal-basis", LEGAL, "--workers", "1", "--verbose", user="ada")
    assert result.exit_code == 0, result.output
    assert web.paths() == ["/robots.txt"] and "robots_unreachable" in result.stdout


def test_an_operator_may_override_robots_txt_for_a_list_with_a_recorded_reason(data, tmp_path, dev_images,
                                                                               monkeypatch) -> None:
    reason = "the site owner asked us in writing (ticket 42) to index the staff photos"
    with serve("") as (web,):
        _site(web, dev_images[0].path.read_bytes(),
              Route(b"User-agent: *\nDisallow: /\n", content_type="text/plain"))
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        added = cli(data, "source", "add", "list", "--kind", "urls", "--legal-basis", LEGAL,
                    "--ignore-robots", reason, user="ada")
        assert added.exit_code == 0, added.output
        result = cli(data, "ingest", "urls", str(_listing(tmp_path, web)), "--source", "list", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert sorted(web.paths()) == ["/img/a.jpg", "/private/b.jpg"]  # robots.txt not even read
    with Database(f"sqlite:///{data / 'facetrail.db'}").session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "source.add")).one()
    assert reason in str(entry.details)
