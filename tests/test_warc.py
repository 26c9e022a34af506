"""Reading web archives (facetrail.ingest.warc) from small WARC files written with warcio."""

from __future__ import annotations

import gzip
import io
import random
import tracemalloc
import zlib
from datetime import UTC, datetime
from pathlib import Path

import brotli
import pytest
from backports.zstd import compress as zstd_compress
from PIL import Image
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from facetrail.crawl.extract import ImageRef
from facetrail.crawl.scope import Scope
from facetrail.images.decode import decode
from facetrail.ingest.warc import ArchivedImage, ArchivedPage, read_warc

MAX_BYTES = 50_000
GALLERY = "http://site.example/gallery/"
PHOTOS = GALLERY + "photos/"


def image_bytes(fmt: str, size: tuple[int, int] = (16, 12), noise: bool = False) -> bytes:
    image = Image.new("RGB", size, (200, 120, 40))
    if noise:  # incompressible: a large file from a modest size
        rng = random.Random(7)
        image = Image.frombytes("RGB", size, bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 3)))
    out = io.BytesIO()
    image.save(out, fmt, quality=95) if fmt == "JPEG" else image.save(out, fmt)
    return out.getvalue()


JPEG = image_bytes("JPEG")
PNG = image_bytes("PNG")
PNG_2X = image_bytes("PNG", (32, 24))
BIG_JPEG = image_bytes("JPEG", (300, 300), noise=True)


def date(second: int) -> str:
    return f"2024-03-01T10:00:{second:02d}Z"


def at(second: int, micro: int = 0) -> datetime:
    return datetime(2024, 3, 1, 10, 0, second, micro, tzinfo=UTC)


def chunked(data: bytes, size: int = 100) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size)]
    return b"".join(parts) + b"0\r\n\r\n"


class Archive:
    """A WARC file being written."""

    def __init__(self, path: Path, gz: bool) -> None:
        self.file = path.open("wb")
        self.writer = WARCWriter(self.file, gzip=gz)

    def response(self, url: str, body: bytes, warc_date: str, status: str = "200 OK",
                 headers: list[tuple[str, str]] | None = None) -> None:
        http = StatusAndHeaders(status, headers or [], protocol="HTTP/1.1")
        self.writer.write_record(self.writer.create_warc_record(
            url, "response", payload=io.BytesIO(body), length=len(body), http_headers=http,
            warc_headers_dict={"WARC-Date": warc_date}))

    def record(self, url: str, kind: str, body: bytes, warc_date: str, content_type: str = "") -> None:
        self.writer.write_record(self.writer.create_warc_record(
            url, kind, payload=io.BytesIO(body), length=len(body), warc_content_type=content_type,
            warc_headers_dict={"WARC-Date": warc_date}))

    def offset(self) -> int:
        self.file.flush()
        return self.file.tell()

    def close(self) -> None:
        self.file.close()


PAGE_1 = b"""<!doctype html><html><head><title>Our  team</title>
<link rel="canonical" href="/gallery/index.html">
<meta property="og:image" content="https://site.example/img/cover.jpg">
<meta property="og:image:alt" content="The whole team">
</head><body>
<img src="photos/alice.jpg" alt="Alice  Smith">
<img src="photos/bob.png" srcset="photos/bob.png 1x, photos/bob@2x.png 2x" alt="Bob Jones">
<img src="photos/noai.jpg" alt="Private">
<img src="photos/big.jpg" alt="Huge">
<img src="photos/missing.jpg">
<img src="https://www.instagram.com/p/x.jpg" alt="Insta">
<a href="/about/team.html">About us</a>
</body></html>"""

PAGE_2 = """<html><head><base href="https://cdn.site.example/media/"><title>\u00c0 propos</title></head>
<body><img src="carol.jpg" alt="Carol"><img src="/logo.png"></body></html>""".encode("latin-1")

PAGE_3 = b"""<html><head><meta name="Robots" content="noimageindex"><title>Private</title></head>
<body><img src="/eve.jpg" alt="Eve"></body></html>"""

PAGE_4 = b"""\n<!DOCTYPE html><title>Sniffed</title><img src="dave.jpg" alt="Dave">"""


def write_site(path: Path, gz: bool) -> Path:
    """An archive of every kind of record `read_warc` meets."""
    archive = Archive(path, gz)
    writer = archive.writer
    writer.write_record(writer.create_warcinfo_record(path.name, {"software": "facetrail tests"}))
    archive.record(GALLERY, "request", b"GET /gallery/ HTTP/1.1\r\nHost: site.example\r\n\r\n", date(1))
    archive.response(GALLERY, chunked(brotli.compress(PAGE_1)), date(1), headers=[
        ("Content-Type", "text/html; charset=utf-8"), ("Transfer-Encoding", "chunked"),
        ("Content-Encoding", "br")])
    archive.response("http://site.example/about/team.html", gzip.compress(PAGE_2), date(2), headers=[
        ("Content-Type", "text/html; charset=iso-8859-1"), ("Content-Encoding", "gzip"),
        ("X-Robots-Tag", "googlebot: nofollow")])
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    private = raw_deflate.compress(PAGE_3) + raw_deflate.flush()
    archive.response("http://site.example/private.html", private, date(3),
                     headers=[("Content-Type", "text/html"), ("Content-Encoding", "deflate")])
    archive.response("http://site.example/sniffed", zstd_compress(PAGE_4), date(4), headers=[
        ("Content-Encoding", "zstd"), ("X-Robots-Tag", "index"),  # and no Content-Type
        ("X-Robots-Tag", "otherbot: noimageai")])
    archive.response(PHOTOS + "alice.jpg", JPEG, date(5), headers=[  # stored decoded, header kept
        ("Content-Type", "image/jpeg"), ("Content-Encoding", "gzip")])
    archive.response(PHOTOS + "bob.png", chunked(PNG), "2024-03-01T10:00:06.25Z", headers=[
        ("Content-Type", "application/octet-stream"), ("Transfer-Encoding", "chunked")])
    archive.response(PHOTOS + "noai.jpg", JPEG, date(7),
                     headers=[("Content-Type", "image/jpeg"), ("X-Robots-Tag", "noai")])
    archive.response(PHOTOS + "big.jpg", BIG_JPEG, date(8), headers=[("Content-Type", "image/jpeg")])
    archive.response(PHOTOS + "missing.jpg", b"<h1>Not found</h1>", date(9), status="404 Not Found",
                     headers=[("Content-Type", "text/html")])
    archive.response("http://site.example/report.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 4, date(10),
                     headers=[("Content-Type", "application/pdf")])
    archive.response("http://site.example/blob.bin", bytes(range(256)) * 4, date(11),
                     headers=[("Content-Type", "application/octet-stream")])
    archive.response("http://site.example/packed.jpg", JPEG, date(11),
                     headers=[("Content-Type", "image/jpeg"), ("Content-Encoding", "compress")])
    writer.write_record(writer.create_revisit_record(
        PHOTOS + "alice.jpg", "sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", PHOTOS + "alice.jpg", date(5),
        http_headers=StatusAndHeaders("200 OK", [("Content-Type", "image/jpeg")], protocol="HTTP/1.1"),
        warc_headers_dict={"WARC-Date": date(12)}))
    archive.record(PHOTOS + "bob@2x.png", "resource", PNG_2X, date(13), content_type="image/png")
    archive.record(PHOTOS + "alice.jpg", "metadata", b"via: " + GALLERY.encode() + b"\r\n", date(14),
                   content_type="application/warc-fields")
    archive.response("https://www.instagram.com/p/x.jpg", JPEG, date(15),
                     headers=[("Content-Type", "image/jpeg")])
    archive.response("http://site.example/old", b"", date(16), status="301 Moved Permanently",
                     headers=[("Location", "http://site.example/gallery/")])
    archive.record("dns:site.example", "response", b"20240301100017\nsite.example. 300 IN A 192.0.2.1\n",
                   date(17), content_type="text/dns")
    archive.close()
    return path


def read(path: Path, **kwargs) -> tuple[list[ArchivedPage | ArchivedImage], list[tuple[str, str, str]]]:
    errors: list[tuple[str, str, str]] = []
    items = list(read_warc(path, max_bytes=kwargs.pop("max_bytes", MAX_BYTES),
                           on_error=lambda *error: errors.append(error), **kwargs))
    return items, errors


@pytest.mark.parametrize("name", ["site.warc", "site.warc.gz"])
def test_reads_pages_and_images(tmp_path: Path, name: str) -> None:
    path = write_site(tmp_path / name, gz=name.endswith(".gz"))
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"WA")
    items, errors = read(path)

    pages = [item for item in items if isinstance(item, ArchivedPage)]
    images = [item for item in items if isinstance(item, ArchivedImage)]
    assert len(pages) + len(images) == len(items)
    assert pages == [
        ArchivedPage(
            url=GALLERY, captured_at=at(1), status=200, title="Our team",
            canonical_url="http://site.example/gallery/index.html",
            images=[ImageRef(PHOTOS + "alice.jpg", "Alice Smith", GALLERY),
                    ImageRef(PHOTOS + "bob.png", "Bob Jones", GALLERY),
                    ImageRef(PHOTOS + "bob@2x.png", "Bob Jones", GALLERY),
                    ImageRef(PHOTOS + "noai.jpg", "Private", GALLERY),
                    ImageRef(PHOTOS + "big.jpg", "Huge", GALLERY),
                    ImageRef(PHOTOS + "missing.jpg", "", GALLERY),
                    ImageRef("https://www.instagram.com/p/x.jpg", "Insta", GALLERY),
                    ImageRef("https://site.example/img/cover.jpg", "The whole team", GALLERY)],
            robots=frozenset()),
        ArchivedPage(  # gzip content-encoding, latin-1, <base href>, a non-blocking X-Robots-Tag
            url="http://site.example/about/team.html", captured_at=at(2), status=200, title="\u00c0 propos",
            canonical_url=None,
            images=[ImageRef("https://cdn.site.example/media/carol.jpg", "Carol",
                             "http://site.example/about/team.html"),
                    ImageRef("https://cdn.site.example/logo.png", "", "http://site.example/about/team.html")],
            robots=frozenset({"nofollow"})),
        ArchivedPage(  # <meta name=robots content=noimageindex>: no images
            url="http://site.example/private.html", captured_at=at(3), status=200, title="Private",
            canonical_url=None, images=[], robots=frozenset({"noimageindex"})),
        ArchivedPage(  # no Content-Type (sniffed); X-Robots-Tag noimageai, for another bot: no images
            url="http://site.example/sniffed", captured_at=at(4), status=200, title="Sniffed",
            canonical_url=None, images=[], robots=frozenset({"index", "noimageai"})),
    ]
    assert images == [
        ArchivedImage(PHOTOS + "alice.jpg", at(5), 200, "image/jpeg", JPEG),
        ArchivedImage(PHOTOS + "bob.png", at(6, 250_000), 200, "application/octet-stream", PNG),  # chunked
        ArchivedImage(PHOTOS + "bob@2x.png", at(13), 200, "image/png", PNG_2X),  # a resource record
    ]
    assert [(image.format, image.width) for image in map(decode, (i.body for i in images))] == [
        ("JPEG", 16), ("PNG", 16), ("PNG", 32)]
    assert all(item.captured_at.tzinfo is UTC for item in items)

    assert [(location, reason) for location, reason, _ in errors] == [
        ("http://site.example/private.html", "noimageindex"),
        ("http://site.example/sniffed", "noimageindex"),
        (PHOTOS + "noai.jpg", "noimageindex"),
        (PHOTOS + "big.jpg", "too_large"),
        (PHOTOS + "missing.jpg", "http_status"),
        ("http://site.example/report.pdf", "not_html_or_image"),
        ("http://site.example/blob.bin", "not_html_or_image"),
        ("http://site.example/packed.jpg", "unsupported_encoding"),
        ("https://www.instagram.com/p/x.jpg", "excluded_domain"),
        ("http://site.example/old", "http_status"),
    ]
    messages = {location: message for location, _, message in errors}
    assert "1 image(s)" in messages["http://site.example/private.html"]
    assert "noai" in messages[PHOTOS + "noai.jpg"]
    assert str(MAX_BYTES) in messages[PHOTOS + "big.jpg"]
    assert "404" in messages[PHOTOS + "missing.jpg"]
    assert "301" in messages["http://site.example/old"]
    assert "application/pdf" in messages["http://site.example/report.pdf"]
    assert "compress" in messages["http://site.example/packed.jpg"]


def test_images_of_pages_match_archived_images_by_url(tmp_path: Path) -> None:
    items, _ = read(write_site(tmp_path / "site.warc.gz", gz=True))
    archived = {item.url for item in items if isinstance(item, ArchivedImage)}
    shown = {ref.url for item in items if isinstance(item, ArchivedPage) for ref in item.images}
    assert archived <= shown
    assert len(BIG_JPEG) > MAX_BYTES
    items, errors = read(tmp_path / "site.warc.gz", max_bytes=len(BIG_JPEG))
    assert ArchivedImage(PHOTOS + "big.jpg", at(8), 200, "image/jpeg", BIG_JPEG) in items
    assert "too_large" not in {reason for _, reason, _ in errors}


def test_scope_limits_what_is_read(tmp_path: Path) -> None:
    path = write_site(tmp_path / "site.warc", gz=False)
    items, errors = read(path, scope=Scope(frozenset({"site.example"}), prefixes=(GALLERY,)))
    assert [item.url for item in items] == [GALLERY, PHOTOS + "alice.jpg", PHOTOS + "bob.png",
                                            PHOTOS + "bob@2x.png"]
    reasons = {location: reason for location, reason, _ in errors}
    assert reasons["http://site.example/about/team.html"] == "out_of_scope"
    assert reasons["https://www.instagram.com/p/x.jpg"] == "excluded_domain"
    assert reasons[PHOTOS + "big.jpg"] == "too_large"


@pytest.mark.parametrize("name", ["large.warc", "large.warc.gz"])
def test_large_and_compressed_bodies_are_not_held_in_memory(tmp_path: Path, name: str) -> None:
    archive = Archive(tmp_path / name, gz=name.endswith(".gz"))
    body = JPEG[:4] + random.Random(1).randbytes(8 * 1024 * 1024)
    archive.response(PHOTOS + "huge.jpg", body, date(1), headers=[("Content-Type", "image/jpeg")])
    archive.response(PHOTOS + "huge-chunked.jpg", chunked(body, 6 * 1024 * 1024), date(1),
                     headers=[("Content-Type", "image/jpeg"), ("Transfer-Encoding", "chunked")])
    del body
    zeros = b"<html><title>bomb</title>" + bytes(64 * 1024 * 1024)  # a decompression bomb, 64 MiB
    archive.response(GALLERY + "br.html", brotli.compress(zeros, quality=1), date(1), headers=[
        ("Content-Type", "text/html"), ("Content-Encoding", "br")])
    archive.response(GALLERY + "zstd.html", zstd_compress(zeros), date(1), headers=[
        ("Content-Type", "text/html"), ("Content-Encoding", "zstd")])
    archive.response(GALLERY + "gzip.html", gzip.compress(zeros, 1), date(1), headers=[
        ("Content-Type", "text/html"), ("Content-Encoding", "gzip")])
    del zeros
    archive.response(PHOTOS + "alice.jpg", JPEG, date(2), headers=[("Content-Type", "image/jpeg")])
    archive.close()
    tracemalloc.start()
    try:
        items, errors = read(tmp_path / name, max_bytes=1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [item.url for item in items] == [PHOTOS + "alice.jpg"]
    assert [(location, reason) for location, reason, _ in errors] == [
        (PHOTOS + "huge.jpg", "too_large"), (PHOTOS + "huge-chunked.jpg", "too_large"),
        (GALLERY + "br.html", "too_large"), (GALLERY + "zstd.html", "too_large"),
        (GALLERY + "gzip.html", "too_large")]
    assert peak < 4 * 1024 * 1024


def test_bodies_archived_decoded_under_their_original_headers(tmp_path: Path) -> None:
    """Some archivers store bodies de-chunked and decompressed but keep the headers that say otherwise."""
    archive = Archive(tmp_path / "decoded.warc.gz", gz=True)
    for name, encoding in [("gzip.jpg", "gzip"), ("deflate.jpg", "deflate"), ("br.jpg", "br"),
                           ("zstd.jpg", "zstd")]:
        archive.response(PHOTOS + name, JPEG, date(1),
                         headers=[("Content-Type", "image/jpeg"), ("Content-Encoding", encoding)])
    archive.response(PHOTOS + "chunked.png", PNG, date(2),
                     headers=[("Content-Type", "image/png"), ("Transfer-Encoding", "chunked")])
    archive.response(GALLERY, PAGE_4, date(3), headers=[
        ("Content-Type", "text/html"), ("Transfer-Encoding", "chunked"), ("Content-Encoding", "gzip")])
    archive.close()
    items, errors = read(tmp_path / "decoded.warc.gz")
    assert errors == []
    assert [(item.url, item.body) for item in items if isinstance(item, ArchivedImage)] == [
        (PHOTOS + "gzip.jpg", JPEG), (PHOTOS + "deflate.jpg", JPEG), (PHOTOS + "br.jpg", JPEG),
        (PHOTOS + "zstd.jpg", JPEG), (PHOTOS + "chunked.png", PNG)]
    assert [item.title for item in items if isinstance(item, ArchivedPage)] == ["Sniffed"]


def test_a_body_damaged_after_its_start_is_a_corrupt_record(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "damaged.warc", gz=False)
    packed = gzip.compress(BIG_JPEG, 1)
    archive.response(PHOTOS + "damaged.jpg", packed[:2000] + bytes(4000) + packed[6000:], date(1),
                     headers=[("Content-Type", "image/jpeg"), ("Content-Encoding", "gzip")])
    archive.response(PHOTOS + "alice.jpg", JPEG, date(2), headers=[("Content-Type", "image/jpeg")])
    archive.close()
    items, errors = read(tmp_path / "damaged.warc", max_bytes=len(BIG_JPEG))
    assert [item.url for item in items] == [PHOTOS + "alice.jpg"]
    assert [(location, reason) for location, reason, _ in errors] == [
        (PHOTOS + "damaged.jpg", "corrupt_record")]


def write_three(path: Path, gz: bool) -> list[int]:
    """A page and two images; returns the offsets where each record ends."""
    archive = Archive(path, gz)
    ends = []
    archive.response(GALLERY, PAGE_1, date(1), headers=[("Content-Type", "text/html")])
    ends.append(archive.offset())
    archive.response(PHOTOS + "alice.jpg", JPEG, date(5), headers=[("Content-Type", "image/jpeg")])
    ends.append(archive.offset())
    archive.response(PHOTOS + "bob.png", PNG, date(6), headers=[("Content-Type", "image/png")])
    ends.append(archive.offset())
    archive.close()
    return ends


@pytest.mark.parametrize(("name", "where"), [
    ("cut.warc.gz", "last record"), ("cut.warc.gz", "second record"), ("cut.warc.gz", "gzip trailer"),
    ("cut.warc", "last record"), ("cut.warc", "second record")])
def test_a_truncated_archive_yields_what_it_can_and_reports_once(tmp_path: Path, name: str,
                                                                 where: str) -> None:
    gz = name.endswith(".gz")
    path = tmp_path / name
    ends = write_three(path, gz)
    data = path.read_bytes()
    cut = {"last record": (ends[1] + ends[2]) // 2, "second record": (ends[0] + ends[1]) // 2,
           "gzip trailer": len(data) - 4}[where]
    path.write_bytes(data[:cut])

    items, errors = read(path)
    expected = {"last record": [GALLERY, PHOTOS + "alice.jpg"], "second record": [GALLERY],
                "gzip trailer": [GALLERY, PHOTOS + "alice.jpg", PHOTOS + "bob.png"]}[where]
    assert [item.url for item in items] == expected
    assert [(location, reason) for location, reason, _ in errors] == [(str(path), "corrupt_archive")]
    assert "truncated" in errors[0][2]
    if expected[-1].endswith(".png"):
        assert items[-1] == ArchivedImage(PHOTOS + "bob.png", at(6), 200, "image/png", PNG)


def test_an_intact_archive_reports_nothing(tmp_path: Path) -> None:
    for name in ("whole.warc", "whole.warc.gz"):
        write_three(tmp_path / name, gz=name.endswith(".gz"))
        items, errors = read(tmp_path / name)
        assert [item.url for item in items] == [GALLERY, PHOTOS + "alice.jpg", PHOTOS + "bob.png"]
        assert errors == []


@pytest.mark.parametrize("content", [b"this is not a web archive\n" * 20, b"\x1f\x8b\x08\x00garbage" * 10,
                                     JPEG])
def test_a_file_that_is_not_a_warc_is_reported(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.warc.gz"
    path.write_bytes(content)
    items, errors = read(path)
    assert items == []
    assert [(location, reason) for location, reason, _ in errors] == [(str(path), "corrupt_archive")]


def test_garbage_after_valid_records(tmp_path: Path) -> None:
    path = tmp_path / "tail.warc"
    write_three(path, gz=False)
    with path.open("ab") as file:
        file.write(b"HTTP/1.1 200 OK\r\nnot a record\r\n\r\n")
    items, errors = read(path)
    assert [item.url for item in items] == [GALLERY, PHOTOS + "alice.jpg", PHOTOS + "bob.png"]
    assert [(location, reason) for location, reason, _ in errors] == [(str(path), "corrupt_archive")]


def test_missing_and_empty_files(tmp_path: Path) -> None:
    items, errors = read(tmp_path / "missing.warc")
    assert items == [] and [reason for _, reason, _ in errors] == ["corrupt_archive"]
    (tmp_path / "empty.warc.gz").write_bytes(b"")
    assert read(tmp_path / "empty.warc.gz") == ([], [])


def test_bad_warc_date_is_reported_and_reading_goes_on(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "dates.warc", gz=False)
    archive.response(PHOTOS + "alice.jpg", JPEG, "yesterday", headers=[("Content-Type", "image/jpeg")])
    archive.response(PHOTOS + "bob.png", PNG, "2024-03-01T11:00:06+01:00",  # taken as UTC+1
                     headers=[("Content-Type", "image/png")])
    archive.close()
    items, errors = read(tmp_path / "dates.warc")
    assert items == [ArchivedImage(PHOTOS + "bob.png", at(6), 200, "image/png", PNG)]
    assert [(location, reason) for location, reason, _ in errors] == [
        (PHOTOS + "alice.jpg", "corrupt_record")]


@pytest.mark.parametrize("name", ["fuzz.warc", "fuzz.warc.gz"])
def test_damaged_archives_never_raise(tmp_path: Path, name: str) -> None:
    """Random damage (flipped bytes, cuts, insertions, zeroed runs): no exception escapes, and a
    damaged archive is reported as corrupt at most once."""
    data = write_site(tmp_path / name, gz=name.endswith(".gz")).read_bytes()
    rng = random.Random(name)
    path = tmp_path / ("damaged-" + name)
    for _ in range(150):
        damaged = bytearray(data)
        pos = rng.randrange(len(damaged))
        match rng.choice(["flip", "cut", "insert", "zero"]):
            case "flip":
                for _ in range(rng.randint(1, 20)):
                    damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            case "cut":
                del damaged[pos:]
            case "insert":
                damaged[pos:pos] = rng.randbytes(rng.randint(1, 50))
            case "zero":
                damaged[pos:pos + 200] = bytes(200)
        path.write_bytes(damaged)
        items, errors = read(path)
        assert sum(reason == "corrupt_archive" for _, reason, _ in errors) <= 1
        assert all(isinstance(item, ArchivedPage | ArchivedImage) for item in items)
