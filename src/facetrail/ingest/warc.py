"""Read web archives (WARC 1.0/1.1, plain `.warc` or record-gzipped `.warc.gz`) into plain data.

`read_warc` streams an archive record by record (warcio) and yields what ingest needs from it:

* `ArchivedPage`: an archived HTML page (its images with alt text, title, canonical URL, robots
  directives), parsed by `facetrail.crawl.extract` like a crawled page.
* `ArchivedImage`: an archived image: its HTTP body, decoded from any chunked transfer-encoding and
  gzip/deflate/br/zstd content-encoding, not yet decoded as an image.

Bodies are de-chunked and decompressed here, in bounded steps, rather than by warcio's
`content_stream()` (which inflates a whole block at once: a few KB of brotli can hold gigabytes), so
memory stays near `max_bytes` per record whatever the archive holds. A record whose HTML is sniffed
rather than typed, or an image recognised by its magic bytes (`sniff_format`) under a vague
Content-Type, is read too.

The caller matches the images of pages (`ImageRef.url`) to archived images by URL. Only `response`
and `resource` records with an http(s) target are read; `revisit`, `request`, `metadata`,
`warcinfo`, `conversion` and `continuation` records are ignored. Everything else not yielded is
reported through `on_error(location, reason, message)`:

* `http_status`: a response that is not 2xx (redirects included).
* `excluded_domain` / `out_of_scope`: a record on an excluded domain (social media and video
  platforms, always refused) or, when a `scope` is given, outside it.
* `noimageindex`: an image whose X-Robots-Tag forbids indexing it (noimageindex, noai, noimageai,
  noindex, none), or a page whose robots meta tag or X-Robots-Tag does (the page is still yielded,
  with no images).
* `too_large`: a body over `max_bytes` (pages and images alike), abandoned once the limit is passed.
* `not_html_or_image`: a record that is neither (CSS, scripts, PDFs...).
* `unsupported_encoding`: a Content-Encoding other than gzip, deflate, br, zstd (or identity).
* `corrupt_record`: a record whose date, status line or body cannot be read; reading goes on.
* `corrupt_archive`: an archive that cannot be opened or read further (bad framing, a truncated
  file, an ARC file); reported once, with the archive's path as location, after everything before
  the damage was yielded. No exception escapes for a damaged archive.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urldefrag, urlsplit

from w3lib.encoding import html_to_unicode
from warcio.archiveiterator import WARCIterator
from warcio.limitreader import LimitReader

from ..crawl.bodies import CHUNK, Stream, Unsupported, blocks, dechunk, decompress
from ..crawl.extract import ImageRef, blocks_images, extract, robots_directives
from ..crawl.scope import Scope, is_excluded
from ..images.decode import sniff_format

_HEAD = 1024  # bytes looked at to recognise images and HTML without a telling Content-Type
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Content-Types that say nothing about the body: sniffed for HTML.
_UNTYPED = frozenset({"", "text/plain", "application/octet-stream", "binary/octet-stream",
                      "application/unknown", "unknown/unknown"})
_HTML_START = re.compile(rb"<(?:!doctype\s+html|html|head|body|title|meta)[\s>/]", re.IGNORECASE)

OnError = Callable[[str, str, str], None]


@dataclass(frozen=True)
class ArchivedPage:
    """An archived HTML page."""

    url: str  # WARC-Target-URI, without fragment (also the base of relative URLs, unless <base href>)
    captured_at: datetime  # WARC-Date, aware, UTC
    status: int  # HTTP status (200 for a `resource` record)
    title: str
    canonical_url: str | None  # <link rel=canonical>, absolute
    images: list[ImageRef]  # empty if `robots` forbids indexing the page's images
    robots: frozenset[str]  # directives of <meta name=robots> and the X-Robots-Tag header
    # where the record is in the archive, as warcio delimits it (capture.py copies it); not compared
    record_offset: int = dataclasses.field(default=0, compare=False)
    record_length: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class ArchivedImage:
    """An archived image response (bytes not decoded: `facetrail.images.decode` does that)."""

    url: str  # WARC-Target-URI, without fragment
    captured_at: datetime  # WARC-Date, aware, UTC
    status: int  # HTTP status (200 for a `resource` record)
    content_type: str  # as archived ("" if none)
    body: bytes  # the HTTP body, transfer- and content-decoded
    # where the record is in the archive, as warcio delimits it (capture.py copies it); not compared
    record_offset: int = dataclasses.field(default=0, compare=False)
    record_length: int = dataclasses.field(default=0, compare=False)


def _ignore(location: str, reason: str, message: str) -> None:
    pass


def read_warc(path: str | os.PathLike[str], *, max_bytes: int, on_error: OnError = _ignore,
              scope: Scope | None = None) -> Iterator[ArchivedPage | ArchivedImage]:
    """The pages and images archived in the WARC file at `path`, in archive order (see the module
    docstring for what is skipped and reported). Memory use is bounded by `max_bytes` per record.

    Exceptions raised by `on_error` or by the consumer are not caught.
    """
    location = os.fspath(path)
    try:
        fh = open(location, "rb")  # noqa: SIM115 - closed by the `with` below
    except OSError as exc:
        on_error(location, "corrupt_archive", f"{location}: cannot open the archive: {exc}")
        return
    with fh:
        archive = _Records(fh)
        records = iter(archive)
        while True:
            try:
                record = next(records)
            except StopIteration:
                record = None
            except Exception as exc:  # noqa: BLE001 - warcio raises many kinds on damaged input
                on_error(location, "corrupt_archive", f"{location}: unreadable archive after "
                         f"{fh.tell()} bytes: {type(exc).__name__}: {exc}")
                return
            if archive.cut_short:
                on_error(location, "corrupt_archive", f"{location}: the archive is truncated (it ends "
                         "inside a record or a gzip member)")
                return
            if record is None:
                return
            try:
                events = _read_record(record, max_bytes, scope)
            except Exception as exc:  # noqa: BLE001 - a damaged body; the archive may still be fine
                url = _target(record) or location
                events = [(url, "corrupt_record", f"{url}: unreadable record: {type(exc).__name__}: {exc}")]
            try:
                complete = _drain(record)
            except Exception as exc:  # noqa: BLE001
                on_error(location, "corrupt_archive", f"{location}: unreadable archive after "
                         f"{fh.tell()} bytes: {type(exc).__name__}: {exc}")
                return
            if not complete:
                on_error(location, "corrupt_archive", f"{location}: the archive is truncated (or a "
                         f"record's Content-Length is wrong) in the record of {_target(record) or 'no URL'}")
                return
            where = _where(archive) if any(not isinstance(event, tuple) for event in events) else {}
            for event in events:
                if isinstance(event, tuple):
                    on_error(*event)
                else:
                    yield dataclasses.replace(event, **where)


class _Records(WARCIterator):
    """warcio's WARC iterator, noting (`cut_short`) an archive that ends inside a record's headers or
    inside a gzip member: warcio takes either for the end of a complete archive."""

    cut_short = False

    def _consumed(self) -> int:
        reader = self.reader
        return reader.num_read - (reader.buff_size - reader.buff.tell() if reader.buff else 0)

    def _next_record(self, next_line: bytes | None) -> Any:
        start = self._consumed()
        try:
            return super()._next_record(next_line)
        except EOFError:  # no more records, unless a record had begun
            if next_line or self._consumed() > start:
                self.cut_short = True
            raise

    def close(self) -> None:
        decompressor = self.reader.decompressor if self.reader is not None else None
        if decompressor is not None and not getattr(decompressor, "eof", True) and self.fh.tell() > 0:
            self.cut_short = True
        super().close()


def _where(archive: WARCIterator) -> dict[str, int]:
    """Offset and length of the record just read (empty if warcio cannot tell)."""
    try:
        return {"record_offset": archive.get_record_offset(), "record_length": archive.get_record_length()}
    except Exception:  # noqa: BLE001
        return {}


def _target(record: Any) -> str:
    """The record's target URI, without fragment ("" if none)."""
    uri = (record.rec_headers.get_header("WARC-Target-URI") or "").strip()
    try:
        return urldefrag(uri).url
    except ValueError:
        return uri


def _drain(record: Any) -> bool:
    """Read the rest of the record; False if it ends before its Content-Length (a truncated archive)
    or has no Content-Length (so no known end)."""
    raw = record.raw_stream
    while raw.read(CHUNK):
        pass
    return isinstance(raw, LimitReader) and raw.limit == 0


def _capture_date(value: str | None) -> datetime | None:
    """WARC-Date as an aware UTC datetime (the standard says UTC: a naive value is taken as UTC)."""
    try:
        date = datetime.fromisoformat((value or "").strip())
    except ValueError:
        return None
    return date.replace(tzinfo=UTC) if date.tzinfo is None else date.astimezone(UTC)


def _read_head(stream: Any) -> bytes:
    head = b""
    while len(head) < _HEAD and (chunk := stream.read(_HEAD - len(head))):
        head += chunk
    return head


def _read_body(stream: Any, head: bytes, max_bytes: int) -> bytes | None:
    """`head` and the rest of `stream`, or None as soon as that passes `max_bytes`."""
    chunks, size = [head], len(head)
    while size <= max_bytes:
        chunk = stream.read(min(CHUNK, max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    return None


def _kind(content_type: str, head: bytes) -> str | None:
    """"page", "image" or None, from the Content-Type, else from the first bytes."""
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime in _HTML_TYPES:
        return "page"
    if mime.startswith("image/"):
        return "image"
    if not mime.startswith("text/") and sniff_format(head) is not None:
        return "image"
    if mime in _UNTYPED and _HTML_START.search(head.lstrip(b"\xef\xbb\xbf \t\r\n")[:_HEAD]):
        return "page"
    return None


def _body(record: Any) -> Stream:
    """The body of a record: a response's HTTP body de-chunked and decoded, a resource's block."""
    http = record.http_headers if record.rec_type == "response" else None
    if http is None:
        return Stream(blocks(record.raw_stream))
    chunked = (http.get_header("Transfer-Encoding") or "").replace(" ", "").lower().endswith("chunked")
    pieces = dechunk(record.raw_stream) if chunked else blocks(record.raw_stream)
    encoding = (http.get_header("Content-Encoding") or "").strip().lower()
    return Stream(decompress(pieces, encoding))


Event = ArchivedPage | ArchivedImage | tuple[str, str, str]


def _read_record(record: Any, max_bytes: int, scope: Scope | None) -> list[Event]:
    """What one record gives: nothing, an error report, a page or image (and maybe a report)."""
    if record.rec_type not in ("response", "resource"):
        return []
    url = _target(record)
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return [(url, "corrupt_record", f"{url!r} is not a valid URL")]
    if parts.scheme not in ("http", "https") or not host:
        return []  # dns:, urn:, file: and other non-web records
    why = "excluded_domain" if is_excluded(host) else scope.refusal(url) if scope is not None else None
    if why:
        where = "on an excluded domain" if why == "excluded_domain" else "outside the import's scope"
        return [(url, why, f"{url} is {where}")]
    captured_at = _capture_date(record.rec_headers.get_header("WARC-Date"))
    if captured_at is None:
        message = f"{url}: invalid WARC-Date {record.rec_headers.get_header('WARC-Date')!r}"
        return [(url, "corrupt_record", message)]

    x_robots_tag = ""
    if record.rec_type == "response":
        http = record.http_headers
        try:
            status = int(http.get_statuscode()) if http is not None else 0
        except ValueError:
            status = 0
        if not 100 <= status <= 999:
            return [(url, "corrupt_record", f"{url}: no valid HTTP status line")]
        if not 200 <= status < 300:
            return [(url, "http_status", f"{url}: HTTP status {status}")]
        content_type = http.get_header("Content-Type") or ""
        x_robots_tag = ", ".join(value for name, value in http.headers if name.lower() == "x-robots-tag")
    else:  # a resource record: the body as is, typed by the record's Content-Type
        status = 200
        content_type = record.rec_headers.get_header("Content-Type") or ""

    stream = _body(record)
    try:
        head = _read_head(stream)
    except Unsupported as exc:
        return [(url, "unsupported_encoding", f"{url}: Content-Encoding {exc} is not supported")]
    kind = _kind(content_type, head)
    if kind is None:
        return [(url, "not_html_or_image",
                 f"{url} is neither an HTML page nor an image ({content_type or 'no Content-Type'})")]
    if kind == "image" and blocks_images(robots := robots_directives(x_robots_tag)):
        return [(url, "noimageindex", f"{url}: X-Robots-Tag says {', '.join(sorted(robots))}")]
    body = _read_body(stream, head, max_bytes)
    if body is None:
        return [(url, "too_large", f"{url}: the body is over the limit of {max_bytes} bytes")]
    if kind == "image":
        return [ArchivedImage(url=url, captured_at=captured_at, status=status,
                              content_type=content_type, body=body)]

    _, html = html_to_unicode(content_type or None, body)
    page = extract(html, url=url, final_url=url, status=status, x_robots_tag=x_robots_tag)
    events: list[Event] = []
    if page.images and blocks_images(page.robots):
        says = ", ".join(sorted(page.robots))
        message = f"{len(page.images)} image(s) of {url} not indexed: the page says {says}"
        events.append((url, "noimageindex", message))
        page = dataclasses.replace(page, images=[])
    events.append(ArchivedPage(url=url, captured_at=captured_at, status=status, title=page.title,
                               canonical_url=page.canonical_url, images=page.images, robots=page.robots))
    return events
