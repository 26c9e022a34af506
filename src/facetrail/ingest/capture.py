"""Capture at crawl time (issue 18, item 1): the HTTP answers of what was indexed, kept as WARC.

Every page and image a crawl indexes, and every image a URL list ingest indexes, is kept as the
fetcher received it, in WARC 1.1 files in the data folder; a WARC ingest copies the records it
used. A result can then point to the exact bytes seen and when (`find`), and an evidence package
can carry them (`facetrail evidence export` copies `Captured.read()` into its WACZ).

Decisions:

* **Layout.** `DATA/captures/<source id>/facetrail-<source id>-<UTC time>-<pid>-<n>.warc.gz`, each
  file with a `warcinfo` record first and an index beside it (`<file>.idx`, one JSON object per
  line); file names sort by creation time. The index is a cache: `find` rebuilds what it lacks by
  scanning the WARC file, so no database table is needed. `source.json` names the source (id, name,
  declared at), so captures of a removed source whose id was given again are never mixed in.
* **What a capture holds.** For each hop of a fetch (redirects first), a `response` record and its
  `request` record (`WARC-Concurrent-To`), written one after the other, each as a gzip member of
  its own. WARC-Date = when the response head arrived (microseconds, UTC); WARC-Target-URI = the
  URL of the hop (as sent: escaped); WARC-IP-Address on the last hop (the address connected to);
  `Facetrail-Requested-URI` = the URL asked for at the start of the chain, as the caller knows it
  (the image URL a page showed, a line of a URL list, unescaped), on every hop whose own URL
  differs from it (redirects; `a b.jpg` fetched as `a%20b.jpg`). WARC-Payload-Digest and WARC-Block-Digest are SHA-256 (base32, warcio's form).
* **Exact bytes.** The response record holds the status line and headers as received (order, case,
  repeats) and the body as received: a Content-Encoding is **not** undone (facetrail asks for
  `identity`; a server that compresses anyway is archived compressed, header and all). The one
  transformation is the transfer coding: the body is stored de-chunked, so a `Transfer-Encoding`
  header is renamed `X-Archive-Orig-Transfer-Encoding` (pywb's convention) and replay tools read
  the body as is. A redirect's body is not read by the fetcher: its record has no body, and its
  `Content-Length`/`Content-Encoding`/`Transfer-Encoding` are renamed the same way. Header values
  outside ASCII are %-encoded (RFC 8187), as warcio does. A page rendered by a browser
  (`render_js`) is kept as served, not as rendered; an image answered 304 Not Modified is not kept
  again (its earlier capture stands).
* **Copies from WARC ingest.** The response or resource record used, byte for byte when the archive
  is gzipped per record (a record of an uncompressed archive is gzipped as its own member), without
  its request record.
* **Size.** A file is closed and a new one started before a record would take it past
  `FACETRAIL_CAPTURE_MAX_BYTES` (a record larger than that gets a file of its own); the files of a
  source hold at most `FACETRAIL_CAPTURE_SOURCE_MAX_BYTES`: past it, its oldest files are deleted
  (their captures are gone; a result then has none). `FACETRAIL_CAPTURE_SOURCE_MAX_BYTES=0`: nothing
  is captured.
* **Removal.** `remove` deletes a source's captures; `facetrail source remove` calls it after the
  source's rows are gone (a writer that finds captures of another source under its id removes them).
  `forget` deletes the captures of given images (by SHA-256) wherever they are, rewriting the files
  that held them, for the opt-out flow. Writers append under an exclusive `flock` of their file
  and move to a new file when theirs was rewritten or deleted meanwhile.

Public: `CaptureWriter` (crawls and ingests), `find`, `remove`, `forget`, `Captured`, `captures_dir`.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import io
import json
import os
import shutil
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.utils import Digester
from warcio.warcwriter import WARCWriter

from .. import __version__
from ..config import Settings
from ..crawl.fetch import Exchange
from ..crawl.fetch import Response as Fetched
from ..store.private import FILE_MODE, make_private_dir

FOLDER = "captures"
SUFFIX = ".warc.gz"
INDEX_SUFFIX = ".idx"
GZIP_LEVEL = 6  # per record, for what compresses (pages); a JPEG gains 1 % at ~24 MB/s, so
SAMPLE = 8192  # a body whose first SAMPLE bytes do not shrink by 10 % is stored in its gzip member as is
REQUESTED = "Facetrail-Requested-URI"
_RENAMED_ALWAYS = frozenset({"transfer-encoding"})
_RENAMED_NO_BODY = frozenset({"transfer-encoding", "content-length", "content-encoding"})


@dataclass(frozen=True)
class Captured:
    """One captured answer: a response (or resource) record, and its request record when it has one.

    `offset` and `length` delimit, in the file at `path`, the record's gzip member followed by its
    request record's member (`response_length` bytes are the response alone): `read()` returns
    those bytes, a valid `.warc.gz` fragment that can be appended to any WARC file as is.
    """

    url: str  # WARC-Target-URI
    requested_url: str  # the URL asked for at the start of its redirect chain, as the caller knew it
    fetched_at: datetime  # WARC-Date: when the answer arrived (aware, UTC)
    status: int  # HTTP status (200 for a resource record)
    record_type: str  # "response" or "resource"
    record_id: str  # WARC-Record-ID
    payload_digest: str | None  # WARC-Payload-Digest ("sha256:BASE32" for facetrail's captures)
    path: Path  # the WARC file
    offset: int
    length: int
    response_length: int

    def read(self) -> bytes:
        """The bytes of the record (and its request record): gzip members, exactly as stored.
        Raises OSError if its file was rotated away (or rewritten by `forget`) since `find`."""
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(self.length)
        if len(data) != self.length:
            raise OSError(f"{self.path}: the capture at {self.offset} is truncated")
        try:  # the headers of the record there must be this record's (not another's, moved up by `forget`)
            head = zlib.decompressobj(zlib.MAX_WBITS + 16).decompress(data[:65536], 8192)
        except zlib.error:
            head = b""
        if not self.record_id or self.record_id.encode() not in head.split(b"\r\n\r\n", 1)[0]:
            raise OSError(f"{self.path}: the capture at {self.offset} is no longer there (find it again)")
        return data

    @property
    def raw(self) -> bytes:
        """`read()`: the record and its request record, as stored (reads the file)."""
        return self.read()

    def read_response(self) -> bytes:
        """The response (or resource) record alone: one gzip member."""
        return self.read()[:self.response_length]


def captures_dir(settings: Settings, source_id: int) -> Path:
    return settings.data_dir / FOLDER / str(int(source_id))


def remove(settings: Settings, source_id: int) -> int:
    """Delete every capture of a source (called once the source is removed). Returns the number of
    WARC files deleted."""
    folder = captures_dir(settings, source_id)
    if not folder.exists():
        return 0
    files = sum(1 for _ in folder.glob(f"*{SUFFIX}"))
    shutil.rmtree(folder)
    return files


def find(settings: Settings, source_id: int, urls: Iterable[str]) -> dict[str, list[Captured]]:
    """The captures of each URL in a source: `{url: [Captured, ...]}`, oldest first (newest last),
    with a key for every URL given (an empty list when nothing of it was captured or its captures
    were rotated away).

    A URL matches the captures whose WARC-Target-URI it is, and those fetched for it
    (`requested_url`): asking for an image URL as a page showed it (`Location.location`) gives the
    redirects' records and the final answer's, and the answer to its escaped form. Reads the small index beside each WARC file (rebuilt by scanning the file
    where it is missing or behind), never the bodies.
    """
    wanted = {url: [] for url in urls}  # type: dict[str, list[Captured]]
    if not wanted:
        return wanted
    folder = captures_dir(settings, source_id)
    for path in sorted(folder.glob(f"*{SUFFIX}")) if folder.exists() else []:
        for entry in _entries(path):
            keys = {entry["url"], entry.get("requested") or entry["url"]}
            for key in keys & wanted.keys():
                wanted[key].append(_captured(path, entry))
    for found in wanted.values():
        found.sort(key=lambda c: (c.fetched_at, c.path.name, c.offset))
    return wanted


def forget(settings: Settings, sha256s: Iterable[str], source_id: int | None = None) -> int:
    """Delete the captures whose body is one of these images (hex SHA-256 of the bytes, as
    `Image.sha256`), in every source (or in `source_id`'s): each WARC file holding one is rewritten
    without it (nor its request record) and its index with it. For the opt-out flow: a person's
    photos must not stay behind in the captures. A capture's body is matched by its SHA-256 payload
    digest, or, for a copied record digested otherwise, by reading it (its body as archived and as
    decoded). Returns the number of captures deleted."""
    doomed_hashes = {h.lower() for h in sha256s}
    root = settings.data_dir / FOLDER
    if not doomed_hashes or not root.exists():
        return 0
    folders = [root / str(int(source_id))] if source_id is not None else [p for p in root.iterdir() if p.is_dir()]
    deleted = 0
    for folder in folders:
        for path in sorted(folder.glob(f"*{SUFFIX}")):
            entries = _entries(path)
            doomed = [e for e in entries if _matches(path, e, doomed_hashes)]
            if doomed:
                deleted += _rewrite(path, entries, doomed)
    return deleted


def _matches(path: Path, entry: dict[str, Any], hashes: set[str]) -> bool:
    digest = entry.get("digest") or ""
    if digest.startswith("sha256:"):
        try:
            return base64.b32decode(digest[7:].upper()).hex() in hashes
        except ValueError:
            pass
    try:
        record = next(iter(ArchiveIterator(io.BytesIO(_captured(path, entry).read_response()))))
        raw = record.raw_stream.read()
        return hashlib.sha256(raw).hexdigest() in hashes or \
            hashlib.sha256(record.content_stream().read()).hexdigest() in hashes
    except Exception:  # noqa: BLE001 - an unreadable record holds no image to forget
        return False


def _rewrite(path: Path, entries: list[dict[str, Any]], doomed: list[dict[str, Any]]) -> int:
    """`path` without the `doomed` entries' bytes, replaced atomically under the writers' lock."""
    gone = {(e["offset"], e["length"]) for e in doomed}
    with open(path, "rb") as old:
        fcntl.flock(old, fcntl.LOCK_EX)
        data = old.read()
        end = max((e["offset"] + e["length"] for e in entries), default=0)
        kept, spans, at = [], [], 0
        for entry in sorted(entries, key=lambda e: e["offset"]):
            if (entry["offset"], entry["length"]) in gone:
                spans.append((at, entry["offset"]))
                at = entry["offset"] + entry["length"]
            else:
                kept.append(entry)
        spans.append((at, end))  # a damaged tail past the last record is dropped too
        out = bytearray()
        moved = [{**e, "offset": e["offset"] - sum(length for offset, length in gone if offset < e["offset"])}
                 for e in kept]
        for start, stop in spans:
            out += data[start:stop]
        temp = path.with_name(path.name + ".tmp")
        with open(_private_create(temp), "wb") as fh:
            fh.write(out)
        index = Path(str(path) + INDEX_SUFFIX)
        index_temp = index.with_name(index.name + ".tmp")
        with open(_private_create(index_temp), "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in moved)
        os.replace(temp, path)
        os.replace(index_temp, index)
    return len(doomed)


def _captured(path: Path, entry: dict[str, Any]) -> Captured:
    return Captured(url=entry["url"], requested_url=entry.get("requested") or entry["url"],
                    fetched_at=_date(entry["date"]) or datetime.min.replace(tzinfo=UTC),
                    status=int(entry.get("status") or 0), record_type=entry["type"], record_id=entry["id"],
                    payload_digest=entry.get("digest"), path=path, offset=int(entry["offset"]),
                    length=int(entry["length"]), response_length=int(entry["response_length"]))


def _date(value: str | None) -> datetime | None:
    try:
        date = datetime.fromisoformat((value or "").strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return date.replace(tzinfo=UTC) if date.tzinfo is None else date.astimezone(UTC)


def _entries(path: Path) -> list[dict[str, Any]]:
    """The index entries of a WARC file: its `.idx`, completed by scanning what it does not cover."""
    entries: list[dict[str, Any]] = []
    try:
        with open(str(path) + INDEX_SUFFIX, encoding="utf-8") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except ValueError:
                    break  # a line cut by a crash: the scan below covers the rest
                entries.append(entry)
    except OSError:
        pass
    covered = max((e["offset"] + e["length"] for e in entries), default=0)
    try:
        size = path.stat().st_size
    except OSError:
        return []  # deleted meanwhile (rotated away)
    if size > covered:
        entries.extend(_scan(path, covered))
    return entries


def _scan(path: Path, start: int) -> Iterator[dict[str, Any]]:
    """Index entries of the records of `path` from byte `start` (a record boundary) on. A damaged or
    unfinished tail (a crash while writing, or a writer still at work) ends the scan quietly."""
    pending: dict[str, Any] | None = None
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            records = ArchiveIterator(fh)
            for record in records:
                kind = record.rec_type
                headers = record.rec_headers
                if kind == "request" and pending is not None and \
                        headers.get_header("WARC-Concurrent-To") == pending["id"]:
                    records.read_to_end()
                    pending["length"] = records.get_record_offset() + records.get_record_length() - pending["offset"]
                    yield pending
                    pending = None
                    continue
                if pending is not None:
                    yield pending
                    pending = None
                if kind in ("response", "resource"):
                    entry = _describe(record)
                    records.read_to_end()
                    entry["offset"] = records.get_record_offset()
                    entry["length"] = entry["response_length"] = records.get_record_length()
                    pending = entry
    except Exception:  # noqa: BLE001 - warcio raises many kinds on a cut tail
        pending = None
    if pending is not None:
        yield pending


def _describe(record: Any) -> dict[str, Any]:
    headers = record.rec_headers
    url = headers.get_header("WARC-Target-URI") or ""
    status = 200
    if record.rec_type == "response" and record.http_headers is not None:
        try:
            status = int(record.http_headers.get_statuscode())
        except ValueError:
            status = 0
    return {"url": url, "requested": headers.get_header(REQUESTED) or url, "type": record.rec_type,
            "date": headers.get_header("WARC-Date") or "", "status": status,
            "id": headers.get_header("WARC-Record-ID") or "", "digest": headers.get_header("WARC-Payload-Digest")}


class _Writer(WARCWriter):
    """warcio's writer with SHA-256 digests, writing uncompressed (the capture gzips each record)."""

    @staticmethod
    def _create_digester() -> Digester:
        return Digester("sha256")


def _gzip(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS + 16)
    return compressor.compress(data) + compressor.flush()


def _level(body: bytes) -> int:
    """GZIP_LEVEL, or 0 (stored: still gzip, ~8x faster) for a body that does not compress
    (JPEG, PNG, WebP, an already compressed page)."""
    if len(body) < SAMPLE:
        return GZIP_LEVEL
    sample = body[:SAMPLE]
    return GZIP_LEVEL if len(zlib.compress(sample, 1)) < 0.9 * len(sample) else 0


def _warc_date(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _kept(headers: Iterable[tuple[str, str]], renamed: frozenset[str]) -> list[tuple[str, str]]:
    return [(f"X-Archive-Orig-{name}" if name.lower() in renamed else name, value) for name, value in headers]


class CaptureWriter:
    """Appends captures of one source to its WARC files, rotating them at the size caps (module
    docstring). Thread-safe. Use as a context manager, or call `close()`; nothing is written (and no
    file made) while capture is off or before the first capture.

        with CaptureWriter(settings, source) as capture:
            capture.fetched(response)          # a crawl's or URL list's fetch.Response
            capture.copy(path, offset, length)  # a record of a WARC file being ingested
    """

    def __init__(self, settings: Settings, source: Any) -> None:
        self.folder = captures_dir(settings, source.id)
        declared = source.created_at
        if declared is not None and declared.tzinfo is None:
            declared = declared.replace(tzinfo=UTC)
        # to the second, in UTC: the same source read back from SQLite or PostgreSQL (whose session
        # time zone may not be UTC) must match itself, or its captures would be taken for another's
        self.source = {"id": source.id, "name": source.name,
                       "created_at": declared.astimezone(UTC).isoformat(timespec="seconds") if declared else None}
        self.max_file = settings.capture_max_bytes
        self.max_total = settings.capture_source_max_bytes
        self.enabled = self.max_total > 0
        self.records = 0  # response/resource records written
        self.bytes = 0  # bytes written (gzipped)
        self._lock = threading.Lock()
        self._fh: Any = None
        self._index: Any = None
        self._path: Path | None = None
        self._size = 0
        self._serial = 0
        self._total: int | None = None
        self._warc = _Writer(io.BytesIO(), gzip=False, warc_version="1.1")

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # what is captured

    def fetched(self, response: Fetched) -> None:
        """Keep a fetch: a response and a request record per hop (module docstring)."""
        if not self.enabled or not response.exchanges:
            return
        last = len(response.exchanges) - 1
        members: list[tuple[dict[str, Any], bytes, bytes]] = []
        for n, exchange in enumerate(response.exchanges):
            body = response.body if n == last else b""
            members.append(self._pair(exchange, body, response.url, response.address if n == last else None,
                                      has_body=n == last))
        self._append(members)

    def copy(self, path: str | os.PathLike[str], offset: int, length: int) -> bool:
        """Keep a record of another WARC file (WARC ingest): the `length` bytes at `offset` of `path`,
        as warcio's iterator delimits it. False if they are not one complete WARC record."""
        if not self.enabled or length <= 0:
            return False
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(length)
        if data[:2] == b"\x1f\x8b":
            decompressor = zlib.decompressobj(zlib.MAX_WBITS + 16)
            try:
                plain = decompressor.decompress(data)
            except zlib.error:
                return False
            if not decompressor.eof or decompressor.unused_data.strip(b"\r\n"):
                return False  # several records in one member, or a cut one
            member = data
        else:
            plain = data if data.endswith(b"\r\n\r\n") else data + b"\r\n\r\n"
            member = _gzip(plain)
        if not plain.startswith(b"WARC/"):
            return False
        try:
            record = next(iter(ArchiveIterator(io.BytesIO(member))))
            entry = _describe(record)
        except Exception:  # noqa: BLE001 - not a readable record
            return False
        if entry["type"] not in ("response", "resource"):
            return False
        self._append([(entry, member, b"")])
        return True

    def _pair(self, exchange: Exchange, body: bytes, requested: str, address: str | None, *,
              has_body: bool) -> tuple[dict[str, Any], bytes, bytes]:
        date = _warc_date(exchange.fetched_at)
        warc_headers = {"WARC-Date": date}
        if requested != exchange.url:
            warc_headers[REQUESTED] = requested
        if address:
            warc_headers["WARC-IP-Address"] = address
        status_line = f"{exchange.status} {exchange.reason}".rstrip()
        http = StatusAndHeaders(status_line, _kept(exchange.headers, _RENAMED_ALWAYS if has_body else _RENAMED_NO_BODY),
                                protocol=exchange.http_version or "HTTP/1.1")
        response = self._warc.create_warc_record(exchange.url, "response", payload=io.BytesIO(body),
                                                 length=len(body), warc_headers_dict=warc_headers,
                                                 http_headers=http)
        target = httpx.URL(exchange.url).raw_path.decode("ascii")
        request_http = StatusAndHeaders(f"GET {target} HTTP/1.1", list(exchange.request_headers),
                                        is_http_request=True)
        request = self._warc.create_warc_record(exchange.url, "request", warc_headers_dict={"WARC-Date": date},
                                                http_headers=request_http)
        record_id = response.rec_headers.get_header("WARC-Record-ID")
        request.rec_headers.add_header("WARC-Concurrent-To", record_id)
        entry = {"url": exchange.url, "requested": requested, "type": "response", "date": date,
                 "status": exchange.status, "id": record_id}
        response_member = _gzip(self._bytes(response), _level(body))
        entry["digest"] = response.rec_headers.get_header("WARC-Payload-Digest")
        return entry, response_member, _gzip(self._bytes(request))

    def _bytes(self, record: Any) -> bytes:
        out = io.BytesIO()
        self._warc.out = out
        self._warc.write_record(record)
        return out.getvalue()

    # files

    def _append(self, members: list[tuple[dict[str, Any], bytes, bytes]]) -> None:
        size = sum(len(response) + len(request) for _, response, request in members)
        with self._lock:
            if self._fh is None or (self._size > 0 and self._size + size > self.max_file):
                self._rotate()
            fcntl.flock(self._fh, fcntl.LOCK_EX)  # `forget` rewrites a file under this lock
            if not self._still_ours():  # rewritten by `forget`, or deleted (another writer's cap, `remove`)
                fcntl.flock(self._fh, fcntl.LOCK_UN)
                self._rotate()
                fcntl.flock(self._fh, fcntl.LOCK_EX)
            try:
                self._write(members)
            finally:
                fcntl.flock(self._fh, fcntl.LOCK_UN)
            self.bytes += size
            self._total = (self._total or 0) + size
            self._trim()

    def _still_ours(self) -> bool:
        try:
            return os.stat(self._path).st_ino == os.fstat(self._fh.fileno()).st_ino
        except FileNotFoundError:
            return False

    def _write(self, members: list[tuple[dict[str, Any], bytes, bytes]]) -> None:
        for entry, response, request in members:
            entry.update(offset=self._size, length=len(response) + len(request), response_length=len(response))
            self._fh.write(response + request)
            self._size += len(response) + len(request)
            self._fh.flush()
            self._index.write(json.dumps(entry, separators=(",", ":")) + "\n")
            self._index.flush()
            self.records += 1

    def _rotate(self) -> None:
        self._close_files()
        if self._serial == 0 or not self.folder.exists():
            self._claim_folder()
        self._serial += 1
        now = datetime.now(UTC)
        name = f"facetrail-{self.source['id']}-{now:%Y%m%d%H%M%S%f}-{os.getpid()}-{self._serial:05d}{SUFFIX}"
        self._path = self.folder / name
        self._fh = _private_open(self._path)
        self._index = open(_private_create(Path(str(self._path) + INDEX_SUFFIX)), "w", encoding="utf-8")  # noqa: SIM115
        info = self._warc.create_warcinfo_record(name, {
            "software": f"facetrail/{__version__} (ingest/capture.py)",
            "format": "WARC File Format 1.1",
            "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
            "isPartOf": f"facetrail source {self.source['name']} (id {self.source['id']})",
            "description": "HTTP answers of what facetrail indexed, as received (see ingest/capture.py)",
        })
        info.rec_headers.replace_header("WARC-Date", _warc_date(now))
        member = _gzip(self._bytes(info))
        self._fh.write(member)
        self._fh.flush()
        self._size = len(member)
        self._total = self._folder_size()

    def _claim_folder(self) -> None:
        """Make the folder ours: captures left there by a removed source that had this id go."""
        marker = self.folder / "source.json"
        try:
            owner = json.loads(marker.read_text())
        except (OSError, ValueError):
            owner = None
        if owner is not None and owner != self.source:
            shutil.rmtree(self.folder)
        make_private_dir(self.folder)
        if owner != self.source:
            with open(_private_create(marker), "w", encoding="utf-8") as fh:
                json.dump(self.source, fh)

    def _folder_size(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob(f"*{SUFFIX}") if p.exists())

    def _trim(self) -> None:
        """Delete the source's oldest files (never the one being written) while over the total cap."""
        if self._total is None or self._total <= self.max_total:
            return
        self._total = self._folder_size()
        for old in sorted(self.folder.glob(f"*{SUFFIX}")):
            if self._total <= self.max_total:
                break
            if old == self._path:
                continue
            try:
                size = old.stat().st_size
                old.unlink()
            except FileNotFoundError:
                continue
            Path(str(old) + INDEX_SUFFIX).unlink(missing_ok=True)
            self._total -= size

    def _close_files(self) -> None:
        for fh in (self._fh, self._index):
            if fh is not None:
                fh.close()
        self._fh = self._index = None

    def close(self) -> None:
        with self._lock:
            self._close_files()


def _private_create(path: Path) -> Path:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    return path


def _private_open(path: Path) -> Any:
    return open(_private_create(path), "ab")  # noqa: SIM115 - closed by CaptureWriter.close
