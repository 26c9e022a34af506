"""Capture at crawl time (issue 18, item 1): what a crawl, a URL list or a WARC ingest indexed is
kept as WARC records in the data folder (ingest/capture.py), found again by URL with `find`,
size-capped and rotated, and removed with its source. A local site on 127.0.0.1 serves everything."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from typer.testing import CliRunner
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from facetrail.cli import app
from facetrail.crawl.fetch import FetchPolicy, SafeFetcher, parse_allow
from facetrail.ingest import capture
from facetrail.store import Appearance, Database, Location, Source

from .support import Route, add_accounts, as_user, cli_base, serve

runner = CliRunner()
LEGAL = "press photos published by the test site, indexed for source verification"


def cli(settings, *args, user=None):
    return runner.invoke(app, [*cli_base(settings), *as_user(settings, user), *args], catch_exceptions=False)


@pytest.fixture
def accounts(settings):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    add_accounts(Database(settings.db_url))
    return settings


def source_id(settings, name: str) -> int:
    with Database(settings.db_url).session() as session:
        return session.scalar(select(Source.id).where(Source.name == name))


def records(folder: Path) -> list:
    """(type, target URI, WARC headers, HTTP headers, payload) of every record of a folder's WARC
    files, in file and record order, read by warcio with digests checked."""
    out = []
    for path in sorted(folder.glob("*.warc.gz")):
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh, check_digests="raise"):
                payload = record.content_stream().read() if record.rec_type != "response" else \
                    record.raw_stream.read()
                out.append((record.rec_type, record.rec_headers.get_header("WARC-Target-URI"),
                            record.rec_headers, record.http_headers, payload))
    return out


def sha256_b32(data: bytes) -> str:
    return "sha256:" + base64.b32encode(hashlib.sha256(data).digest()).decode()


def test_a_crawl_keeps_the_answers_it_indexed(accounts, dev_images, monkeypatch) -> None:
    settings = accounts
    face, other = dev_images[0].path.read_bytes(), dev_images[1].path.read_bytes()
    with serve("") as (web,):
        web.routes.update({
            "/robots.txt": Route(b"User-agent: *\nDisallow: /img/blocked/\n", content_type="text/plain"),
            "/": Route.html("<title>Home</title><img src='/img/a.jpg' alt='a'><img src='/moved.jpg'>"
                            "<img src='/img/missing.jpg'><img src='/img/blocked/x.jpg'><a href='/two'>two</a>"),
            "/two": Route.html("<title>Two</title><img src='/img/a.jpg' alt='again'><img src='/img/s p.jpg'>",
                               headers={"X-Test": "one", "x-test": "two"}),
            "/img/a.jpg": Route.image(face),
            "/moved.jpg": Route(location="/img/b.jpg"),
            "/img/b.jpg": Route.image(other),
            "/img/s%20p.jpg": Route.image(other),
            "/img/blocked/x.jpg": Route.image(face),
        })
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        assert cli(settings, "source", "add", "news", "--url", web.url("/"), "--legal-basis", LEGAL,
                   user="ada").exit_code == 0
        before = datetime.now(UTC)
        crawled = cli(settings, "crawl", "news", "--workers", "1")
        after = datetime.now(UTC)
        assert crawled.exit_code == 0, crawled.output
    sid = source_id(settings, "news")
    folder = settings.data_dir / "captures" / str(sid)
    found = records(folder)
    assert found[0][0] == "warcinfo"
    responses = {url: (warc, http, body) for kind, url, warc, http, body in found if kind == "response"}
    served = {"/": web.routes["/"].body, "/two": web.routes["/two"].body, "/img/a.jpg": face,
              "/moved.jpg": b"", "/img/b.jpg": other, "/img/s%20p.jpg": other}
    # every page and image indexed, with the exact bytes served; nothing else (robots.txt, the
    # 404, the image robots.txt forbids were never indexed)
    assert set(responses) == {web.url(path) for path in served}
    for path, body in served.items():
        warc, http, payload = responses[web.url(path)]
        assert payload == body, path
        assert warc.get_header("WARC-Payload-Digest") == sha256_b32(body)
        assert before <= datetime.fromisoformat(warc.get_header("WARC-Date").replace("Z", "+00:00")) <= after
    assert responses[web.url("/img/a.jpg")][1].get_header("Content-Type") == "image/jpeg"
    assert responses[web.url("/moved.jpg")][1].get_statuscode() == "302"
    assert responses[web.url("/img/b.jpg")][0].get_header("Facetrail-Requested-URI") == web.url("/moved.jpg")
    # headers as received: both spellings of a repeated header, in order
    assert [v for k, v in responses[web.url("/two")][1].headers if k.lower() == "x-test"] == ["one", "two"]
    # each response has its request, sent with the crawler's user agent
    requests = {url: http for kind, url, _, http, _ in found if kind == "request"}
    assert set(requests) == set(responses)
    assert requests[web.url("/img/a.jpg")].get_header("User-Agent").startswith("facetrail/")

    # every image location and page the crawl stored has its capture, found by the URL stored
    with Database(settings.db_url).session() as session:
        stored = set(session.scalars(select(Location.location).where(Location.source_id == sid,
                                                                      Location.image_id.is_not(None))))
        pages = set(session.scalars(select(Appearance.page_url).where(Appearance.source_id == sid)))
    assert web.url("/img/s p.jpg") in stored and len(stored) == 3 and len(pages) == 2
    assert all(capture.find(settings, sid, stored | pages).values())
    (spaced,) = capture.find(settings, sid, [web.url("/img/s p.jpg")])[web.url("/img/s p.jpg")]
    assert spaced.url == web.url("/img/s%20p.jpg") and spaced.requested_url == web.url("/img/s p.jpg")

    # find(): by URL as a page showed it, newest last; a redirect gives both hops
    urls = [web.url("/"), web.url("/img/a.jpg"), web.url("/moved.jpg"), web.url("/img/missing.jpg")]
    got = capture.find(settings, sid, urls)
    assert list(got) == urls and got[web.url("/img/missing.jpg")] == []
    (image,) = got[web.url("/img/a.jpg")]
    assert image.status == 200 and image.payload_digest == sha256_b32(face) and before <= image.fetched_at <= after
    assert [(c.url, c.status) for c in got[web.url("/moved.jpg")]] == [(web.url("/moved.jpg"), 302),
                                                                       (web.url("/img/b.jpg"), 200)]
    # read(): gzip members that are a WARC fragment of their own, response then request
    fragment = list(ArchiveIterator(io.BytesIO(image.read()), check_digests="raise"))
    assert [r.rec_type for r in fragment] == ["response", "request"]
    one = next(iter(ArchiveIterator(io.BytesIO(image.read_response()))))
    assert one.rec_type == "response" and one.raw_stream.read() == face

    removed = cli(settings, "source", "remove", "news", "--yes", user="ada")
    assert removed.exit_code == 0, removed.output
    assert not folder.exists()
    assert capture.find(settings, sid, urls) == {url: [] for url in urls}


def test_a_second_crawl_adds_its_captures_after_the_first(accounts, dev_images, monkeypatch) -> None:
    settings = accounts
    first, second = dev_images[0].path.read_bytes(), dev_images[1].path.read_bytes()
    with serve("") as (web,):
        web.routes.update({"/": Route.html("<img src='/img/a.jpg'>"), "/img/a.jpg": Route.image(first)})
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        assert cli(settings, "source", "add", "news", "--url", web.url("/"), "--legal-basis", LEGAL,
                   user="ada").exit_code == 0
        assert cli(settings, "crawl", "news", "--workers", "1").exit_code == 0
        web.routes["/img/a.jpg"] = Route.image(second)  # the site changed the photo
        assert cli(settings, "crawl", "news", "--workers", "1").exit_code == 0
    got = capture.find(settings, source_id(settings, "news"), [web.url("/img/a.jpg"), web.url("/")])
    bodies = [next(iter(ArchiveIterator(io.BytesIO(c.read())))).raw_stream.read() for c in got[web.url("/img/a.jpg")]]
    assert bodies == [first, second]  # newest last
    assert len(got[web.url("/")]) == 2 and got[web.url("/")][0].fetched_at < got[web.url("/")][1].fetched_at


def test_url_lists_keep_their_records(accounts, tmp_path, dev_images, monkeypatch) -> None:
    settings = accounts
    face = dev_images[0].path.read_bytes()
    with serve("") as (web,):
        web.routes.update({"/img/a.jpg": Route.image(face), "/img/b.jpg": Route.html("not an image")})
        listing = tmp_path / "list.txt"
        listing.write_text(f"{web.url('/img/a.jpg')}\n{web.url('/img/b.jpg')}\n")
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        result = cli(settings, "ingest", "urls", str(listing), "--source", "list", "--legal-basis", LEGAL,
                     "--workers", "1", user="ada")
    assert result.exit_code == 0, result.output
    got = capture.find(settings, source_id(settings, "list"), [web.url("/img/a.jpg"), web.url("/img/b.jpg")])
    assert got[web.url("/img/b.jpg")] == []  # not indexed, not kept
    (kept,) = got[web.url("/img/a.jpg")]
    assert next(iter(ArchiveIterator(io.BytesIO(kept.read())))).raw_stream.read() == face


def _archive(path: Path, gz: bool, page: bytes, image: bytes) -> None:
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=gz)
        for url, body, kind in [("http://site.example/", page, "text/html"),
                                ("http://site.example/a.jpg", image, "image/jpeg"),
                                ("http://site.example/style.css", b"p{}", "text/css")]:
            http = StatusAndHeaders("200 OK", [("Content-Type", kind)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body),
                                                          length=len(body), http_headers=http,
                                                          warc_headers_dict={"WARC-Date": "2024-03-01T10:00:00Z"}))


@pytest.mark.parametrize("gz", [True, False])
def test_warc_ingest_copies_the_records_it_used(accounts, tmp_path, dev_images, gz) -> None:
    settings = accounts
    face = dev_images[0].path.read_bytes()
    page = b"<title>Site</title><img src='a.jpg' alt='A'>"
    archive = tmp_path / ("in.warc.gz" if gz else "in.warc")
    _archive(archive, gz, page, face)
    result = cli(settings, "ingest", "warc", str(archive), "--source", "arc", "--legal-basis", LEGAL,
                 "--workers", "1", user="ada")
    assert result.exit_code == 0, result.output
    urls = ["http://site.example/", "http://site.example/a.jpg", "http://site.example/style.css"]
    got = capture.find(settings, source_id(settings, "arc"), urls)
    assert got[urls[2]] == []  # neither page nor image: not used, not kept
    original = {r.rec_headers.get_header("WARC-Target-URI"): r for r in ArchiveIterator(open(archive, "rb"))}
    for url, body in [(urls[0], page), (urls[1], face)]:
        (kept,) = got[url]
        assert kept.fetched_at == datetime(2024, 3, 1, 10, tzinfo=UTC)  # the capture's date, not the ingest's
        data = kept.read()
        if gz:  # byte for byte the archive's own gzip member
            assert data in archive.read_bytes()
        record = next(iter(ArchiveIterator(io.BytesIO(data))))
        assert record.raw_stream.read() == body
        assert record.rec_headers.get_header("WARC-Record-ID") == original[url].rec_headers.get_header("WARC-Record-ID") \
            if gz else True


def _fetched(web, count: int) -> list:
    fetcher = SafeFetcher(FetchPolicy(allow=parse_allow(f"127.0.0.1:{web.port}")))
    return [fetcher.fetch(web.url(f"/img/{n}.bin")) for n in range(count)]


def _source(sid: int = 7, name: str = "cap") -> SimpleNamespace:
    return SimpleNamespace(id=sid, name=name, created_at=datetime(2026, 1, 1, tzinfo=UTC))


def test_files_rotate_at_their_cap_and_the_oldest_go_past_the_source_cap(tmp_path) -> None:
    from .support import settings_for

    settings = settings_for(tmp_path, capture_max_bytes=8 * 1024, capture_source_max_bytes=20 * 1024)
    bodies = [os.urandom(3000) for _ in range(12)]  # incompressible: ~3.6 KB a capture
    with serve("") as (web,):
        web.routes.update({f"/img/{n}.bin": Route(body, content_type="application/octet-stream")
                           for n, body in enumerate(bodies)})
        answers = _fetched(web, len(bodies))
    urls = [answer.url for answer in answers]
    with capture.CaptureWriter(settings, _source()) as writer:
        for answer in answers:
            writer.fetched(answer)
    folder = capture.captures_dir(settings, 7)
    files = sorted(folder.glob("*.warc.gz"))
    sizes = [path.stat().st_size for path in files]
    assert len(files) >= 2 and all(size <= 8 * 1024 for size in sizes), sizes
    assert sum(sizes) <= 20 * 1024, sizes
    got = capture.find(settings, 7, urls)
    kept = [n for n, url in enumerate(urls) if got[url]]
    assert kept and kept == list(range(kept[0], len(urls)))  # the newest kept, the oldest rotated away
    assert kept[0] > 0
    for n in kept:
        (one,) = got[urls[n]]
        assert next(iter(ArchiveIterator(io.BytesIO(one.read())))).raw_stream.read() == bodies[n]
    for path in files:  # every file is a complete, valid WARC, with its warcinfo first
        kinds = [r.rec_type for r in ArchiveIterator(open(path, "rb"), check_digests="raise")]
        assert kinds[0] == "warcinfo" and kinds.count("response") == kinds.count("request") >= 1


def test_the_index_is_rebuilt_from_the_warc_files(tmp_path) -> None:
    from .support import settings_for

    settings = settings_for(tmp_path)
    with serve("") as (web,):
        web.routes.update({f"/img/{n}.bin": Route(bytes([n]) * 500, content_type="image/x-test") for n in range(3)})
        answers = _fetched(web, 3)
    with capture.CaptureWriter(settings, _source()) as writer:
        for answer in answers:
            writer.fetched(answer)
    urls = [answer.url for answer in answers]
    expected = capture.find(settings, 7, urls)
    (warc,) = capture.captures_dir(settings, 7).glob("*.warc.gz")
    index = Path(str(warc) + ".idx")
    index.write_text(index.read_text().splitlines()[0] + "\n")  # an index behind its file (a crash)
    with open(warc, "ab") as fh:
        fh.write(gzip.compress(b"WARC/1.1\r\nWARC-Type: response\r\n")[:20])  # and a cut record at its end
    assert capture.find(settings, 7, urls) == expected
    index.unlink()
    assert capture.find(settings, 7, urls) == expected


def test_captures_left_by_a_removed_source_never_pass_for_a_new_one(tmp_path) -> None:
    from .support import settings_for

    settings = settings_for(tmp_path)
    with serve("") as (web,):
        web.routes["/img/0.bin"] = Route(b"old", content_type="image/x-test")
        (old,) = _fetched(web, 1)
        web.routes["/img/0.bin"] = Route(b"new", content_type="image/x-test")
        (new,) = _fetched(web, 1)
    with capture.CaptureWriter(settings, _source(7, "gone")) as writer:
        writer.fetched(old)
    with capture.CaptureWriter(settings, _source(7, "reused")) as writer:  # the id given again
        writer.fetched(new)
    (only,) = capture.find(settings, 7, [old.url])[old.url]
    assert next(iter(ArchiveIterator(io.BytesIO(only.read())))).raw_stream.read() == b"new"
    # the same source read back in another time zone, or with its microseconds, is still itself
    same = SimpleNamespace(id=7, name="reused", created_at=datetime(2026, 1, 1, 1, 0, 0, 123456,
                                                                   tzinfo=timezone(timedelta(hours=1))))
    with capture.CaptureWriter(settings, same) as writer:
        writer.fetched(new)
    assert len(capture.find(settings, 7, [old.url])[old.url]) == 2
    assert capture.remove(settings, 7) == 2 and capture.remove(settings, 7) == 0


def test_no_capture_when_the_source_cap_is_zero(tmp_path) -> None:
    from .support import settings_for

    settings = settings_for(tmp_path, capture_source_max_bytes=0)
    with serve("") as (web,):
        web.routes["/img/0.bin"] = Route(b"x", content_type="image/x-test")
        (answer,) = _fetched(web, 1)
    with capture.CaptureWriter(settings, _source()) as writer:
        writer.fetched(answer)
    assert not (settings.data_dir / "captures").exists()


def test_forgetting_an_image_rewrites_the_files_that_hold_it(tmp_path) -> None:
    """For the opt-out flow: an image's captures go (by its SHA-256, as Image.sha256 holds it),
    the rest stay readable where the index says, and a writer still at work moves to a new file."""
    from .support import settings_for

    settings = settings_for(tmp_path)
    bodies = [os.urandom(2000) for _ in range(4)]
    with serve("") as (web,):
        web.routes.update({f"/img/{n}.bin": Route(body, content_type="image/x-test") for n, body in enumerate(bodies)})
        answers = _fetched(web, 4)
    urls = [answer.url for answer in answers]
    writer = capture.CaptureWriter(settings, _source())
    for answer in answers[:3]:
        writer.fetched(answer)
    doomed = hashlib.sha256(bodies[1]).hexdigest()
    before = capture.find(settings, 7, urls)
    assert capture.forget(settings, [doomed]) == 1
    with pytest.raises(OSError):  # found before the rewrite: its bytes are elsewhere now, never another's
        before[urls[2]][0].read()
    writer.fetched(answers[3])  # after the rewrite: into a new file, not the replaced one
    writer.close()
    got = capture.find(settings, 7, urls)
    assert got[urls[1]] == []
    for n in (0, 2, 3):
        (one,) = got[urls[n]]
        assert next(iter(ArchiveIterator(io.BytesIO(one.read())))).raw_stream.read() == bodies[n]
    files = sorted(capture.captures_dir(settings, 7).glob("*.warc.gz"))
    assert len(files) == 2
    for path in files:
        assert bodies[1] not in gzip.decompress(path.read_bytes())
        kinds = [r.rec_type for r in ArchiveIterator(open(path, "rb"), check_digests="raise")]
        assert kinds[0] == "warcinfo"
    assert capture.forget(settings, [doomed]) == 0


def test_answers_are_kept_as_sent_content_encoding_and_all(accounts, dev_images, monkeypatch) -> None:
    """A page sent gzip-encoded (though identity was asked for) is kept encoded, its header with it;
    an image sent chunked is kept de-chunked, its Transfer-Encoding header renamed."""
    import http.server
    import threading

    settings = accounts
    face = dev_images[0].path.read_bytes()
    html = b"<title>Zipped</title><img src='/img/a.jpg' alt='a'>" + b"<!-- padding -->" * 200
    zipped = gzip.compress(html)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/":
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(zipped)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(zipped)
            elif self.path == "/img/a.jpg":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                for at in range(0, len(face), 4096):
                    piece = face[at:at + 4096]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        assert cli(settings, "source", "add", "zip", "--url", base + "/", "--legal-basis", LEGAL,
                   user="ada").exit_code == 0
        crawled = cli(settings, "crawl", "zip", "--workers", "1")
        assert crawled.exit_code == 0, crawled.output
    finally:
        server.shutdown()
        server.server_close()
    got = capture.find(settings, source_id(settings, "zip"), [base + "/", base + "/img/a.jpg"])
    page = next(iter(ArchiveIterator(io.BytesIO(got[base + "/"][0].read()))))
    assert page.http_headers.get_header("Content-Encoding") == "gzip"
    assert page.raw_stream.read() == zipped  # the bytes sent, still encoded
    page = next(iter(ArchiveIterator(io.BytesIO(got[base + "/"][0].read()))))
    assert page.content_stream().read() == html  # which replay tools decode from the header
    image = next(iter(ArchiveIterator(io.BytesIO(got[base + "/img/a.jpg"][0].read()))))
    assert image.http_headers.get_header("Transfer-Encoding") is None
    assert image.http_headers.get_header("X-Archive-Orig-Transfer-Encoding") == "chunked"
    assert image.raw_stream.read() == face
