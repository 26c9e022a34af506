"""Re-crawls that cost little (issue 13 item 9): a second `facetrail crawl` of an unchanged site asks
for every stored image conditionally and downloads none of them again, while first/last seen move on.
The local server on 127.0.0.1 honours If-None-Match and If-Modified-Since and counts the body bytes
it sends."""

from __future__ import annotations

import threading
from pathlib import Path
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from facetrail.store import Appearance, Database, Image, Location
from facetrail.store.models import FetchValidator

from .support import add_accounts
from .test_crawl_store import LEGAL, cli

MODIFIED = "Wed, 01 May 2024 10:00:00 GMT"


@dataclass
class Conditional:
    """path -> (content type, body, ETag or None); `sent` counts body bytes per path."""

    routes: dict[str, tuple[str, bytes, str | None]] = field(default_factory=dict)
    sent: Counter[str] = field(default_factory=Counter)
    not_modified: Counter[str] = field(default_factory=Counter)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def conditional_server() -> Iterator[Conditional]:
    site = Conditional()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            kind, body, etag = site.routes.get(self.path, ("text/plain", b"not found", None))
            status = 200 if self.path in site.routes else 404
            unchanged = status == 200 and kind.startswith("image/") and (
                (etag is not None and self.headers.get("If-None-Match") == etag)
                or (etag is None and self.headers.get("If-Modified-Since") == MODIFIED))
            self.send_response(304 if unchanged else status)
            if kind.startswith("image/"):
                self.send_header(*(("ETag", etag) if etag else ("Last-Modified", MODIFIED)))
            if unchanged:
                site.not_modified[self.path] += 1
                self.end_headers()
                return
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            site.sent[self.path] += len(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def data(tmp_path, db_url, monkeypatch) -> Path:
    """A data folder whose database is SQLite or PostgreSQL (FACETRAIL_DATABASE_URL), with accounts."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.setenv("FACETRAIL_DATABASE_URL", db_url)
    add_accounts(Database(db_url))
    return data_dir


def test_an_unchanged_site_is_recrawled_without_downloading_its_images(data, db_url, dev_images,
                                                                        monkeypatch) -> None:
    photos = [image.path.read_bytes() for image in dev_images[:3]]
    with conditional_server() as site:
        site.routes.update({
            "/robots.txt": ("text/plain", b"User-agent: *\nAllow: /\n", None),
            "/": ("text/html", b"<img src='/a.jpg' alt='a'><img src='/b.jpg'><a href='/two.html'>2</a>", None),
            "/two.html": ("text/html", b"<img src='/a.jpg' alt='again'><img src='/c.jpg'>", None),
            "/a.jpg": ("image/jpeg", photos[0], '"a1"'),
            "/b.jpg": ("image/jpeg", photos[1], None),  # Last-Modified only
            "/c.jpg": ("image/jpeg", photos[2], '"c1"'),
        })
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{site.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        assert cli(data, "source", "add", "news", "--url", site.url("/"), "--legal-basis", LEGAL,
                   user="ada").exit_code == 0
        first = cli(data, "crawl", "news", "--workers", "1")
        assert first.exit_code == 0, first.output
        first_bytes = sum(site.sent.values())
        db = Database(db_url)
        with db.session() as session:
            seen_before = {row.location: row.last_seen
                           for row in session.execute(select(Location.location, Location.last_seen))}
        site.sent.clear()
        site.routes["/c.jpg"] = ("image/jpeg", photos[1], '"c2"')  # changed: downloaded again
        second = cli(data, "crawl", "news", "--workers", "1")
        assert second.exit_code == 0, second.output
    images = {path: n for path, n in site.sent.items() if path.endswith(".jpg")}
    assert images == {"/c.jpg": len(photos[1])}, images  # a.jpg and b.jpg: 304, no body
    assert site.not_modified == Counter({"/a.jpg": 1, "/b.jpg": 1})
    assert sum(site.sent.values()) - len(photos[1]) < 0.05 * first_bytes
    with db.session() as session:
        seen_after = {row.location: row.last_seen
                      for row in session.execute(select(Location.location, Location.last_seen))}
        shown = {(row.page_url, row.image_url) for row in session.scalars(select(Appearance)) if not row.gone}
        assert session.scalar(select(Image.id).join(Location).where(Location.location == site.url("/c.jpg"))
                              ) is not None
    assert all(seen_after[url] > seen_before[url] for url in seen_before)  # still seen, and now
    assert shown == {(site.url("/"), site.url("/a.jpg")), (site.url("/"), site.url("/b.jpg")),
                     (site.url("/two.html"), site.url("/a.jpg")), (site.url("/two.html"), site.url("/c.jpg"))}
    with db.session() as session:
        assert len(session.scalars(select(FetchValidator)).all()) == 3
    removed = cli(data, "source", "remove", "news", "--yes", user="ada")
    assert removed.exit_code == 0, removed.output
    with db.session() as session:  # a removed source leaves no trace of its URLs
        assert session.scalars(select(FetchValidator)).all() == []
