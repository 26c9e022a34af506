"""Evidence packages as WACZ files (Web Archive Collection Zipped 1.1.1): writing one, signing it,
and checking one offline. Plain bytes in, plain bytes out: no database.

The layout follows the WACZ conventions, so standard replay tools open the archive part:

    archive/data.warc.gz       every captured record, each its own gzip member (random access)
    indexes/index.cdxj         one line per record: SURT, 14-digit timestamp, JSON (sorted lines)
    pages/pages.jsonl          a header line, then the pages and images to open
    datapackage.json           every other file with its sha256 and size (frictionless data package)
    datapackage-digest.json    the sha256 of datapackage.json and `signedData`: an Ed25519 signature
                               of that hash string (the WACZ signing layout, anonymous form)

plus facetrail's own files (listed and hashed in datapackage.json like the rest): `evidence/...`
(results with approvals and confirmations, the manifest, the CASE/UCO description
`case-uco.jsonld`), `crops/...`, `query/...` and `audit/...` (entries with inclusion proofs, the
signed checkpoint they are proven against). Every file sits one folder deep, as the WACZ tools
expect (py-wacz's validator matches files by their last two path parts).

`verify` checks all of it and says what it checked, line by line; nothing is trusted because the
package says so: hashes are recomputed, the signature is checked, every audit entry's hash and
Merkle inclusion is recomputed against the signed checkpoint, which must be signed by the same key
as the package (the audit log's checkpoint key: one public key for both).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import ipaddress
import json
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from warcio.archiveiterator import ArchiveIterator
from warcio.warcwriter import WARCWriter

from .. import __version__
from ..governance import checkpoints, merkle, timestamps

WACZ_VERSION = "1.1.1"
SOFTWARE = f"facetrail {__version__}"
WARC_NAME = "data.warc.gz"
PAGES_HEADER = {"format": "json-pages-1.0", "id": "pages", "title": "All Pages"}
DIGEST, PACKAGE = "datapackage-digest.json", "datapackage.json"
AUDIT_ENTRIES, CHECKPOINT = "audit/entries.jsonl", "audit/checkpoint.txt"
CHUNK = 1 << 20
MAX_READ = 256 << 20  # members read whole when checking (lists, JSON, the index): a package is not a zip bomb
MAX_RECORD = 256 << 20  # one WARC record read back to check an index line


# --- records ------------------------------------------------------------------------------------


def resource_record(uri: str, data: bytes, content_type: str, when: datetime | None = None) -> bytes:
    """A gzipped WARC `resource` record holding `data` as found at `uri` (a file:// URI for a folder
    source's file): what a package holds for an image that never crossed HTTP."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True, warc_version="1.1")
    headers = {"WARC-Date": _warc_date(when or datetime.now(UTC)),
               "WARC-Payload-Digest": "sha256:" + hashlib.sha256(data).hexdigest()}
    record = writer.create_warc_record(uri, "resource", payload=io.BytesIO(data), length=len(data),
                                       warc_content_type=content_type, warc_headers_dict=headers)
    writer.write_record(record)
    return buffer.getvalue()


def _warc_date(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _gzip_member(raw: bytes) -> bytes:
    """One record as its own gzip member: kept as it is if it is one already."""
    return raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw, mtime=0)


def surt(url: str) -> str:
    """The SURT form of a URL for the CDXJ index (host reversed, `www.` dropped, lower case);
    a non-HTTP URI (file://) as it is, in lower case."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return url.lower()
    host = parts.hostname.lower()
    try:
        ipaddress.ip_address(host)
        key = host
    except ValueError:
        key = ",".join(reversed(host.removeprefix("www.").split(".")))
    port = f":{parts.port}" if parts.port and parts.port not in (80, 443) else ""
    query = "?" + "&".join(sorted(parts.query.split("&"))) if parts.query else ""
    return f"{key}{port}){parts.path or '/'}{query}".lower()


@dataclass(frozen=True)
class Indexed:
    """What the CDXJ index and pages list say about one record."""

    url: str
    when: datetime
    mime: str
    status: str | None
    digest: str | None
    kind: str


def _indexed(record) -> Indexed | None:
    """The index entry of a record (None for a record not to index: warcinfo, request...)."""
    if record.rec_type not in ("response", "resource", "revisit"):
        return None
    headers = record.rec_headers
    url = headers.get_header("WARC-Target-URI")
    stamp = headers.get_header("WARC-Date") or ""
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        when = datetime.now(UTC)
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    if record.http_headers is not None:
        status = record.http_headers.get_statuscode()
        mime = (record.http_headers.get_header("Content-Type") or "").split(";")[0].strip()
    else:
        status, mime = None, (headers.get_header("Content-Type") or "").split(";")[0].strip()
    return Indexed(url, when, mime or "application/octet-stream", status,
                   headers.get_header("WARC-Payload-Digest"), record.rec_type)


def _records(member: bytes) -> list[tuple[Indexed, int, int]]:
    """The records to index in a run of gzip members (a capture: a response and its request
    record), each with its offset and length in `member`."""
    found = []
    records = ArchiveIterator(io.BytesIO(member))
    for record in records:
        described = _indexed(record)
        records.read_to_end()
        if described is not None:
            found.append((described, records.get_record_offset(), records.get_record_length()))
    return found


def _describe(member: bytes) -> Indexed | None:
    """The first indexed record of a run of gzip members."""
    found = _records(member)
    return found[0][0] if found else None


# --- writing a package --------------------------------------------------------------------------


@dataclass
class Contents:
    """What goes into a package: records (raw WARC records, gzipped or not), page titles by URL,
    and facetrail's own files by path."""

    records: list[bytes] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    title: str = "facetrail evidence package"
    description: str = ""


def _warc(records: Iterable[bytes], created: datetime) -> tuple[bytes, list[tuple[Indexed, int, int]]]:
    """The WARC file (a warcinfo record first) and each indexed record with its offset and length."""
    info = io.BytesIO()
    writer = WARCWriter(info, gzip=True, warc_version="1.1")
    writer.write_record(writer.create_warcinfo_record(WARC_NAME, {"software": SOFTWARE,
                                                                  "format": "WARC File Format 1.1",
                                                                  "created": _warc_date(created)}))
    out, indexed = bytearray(info.getvalue()), []
    for raw in records:
        member = _gzip_member(raw)
        indexed += [(described, len(out) + offset, length) for described, offset, length in _records(member)]
        out += member
    return bytes(out), indexed


def _cdxj(indexed: list[tuple[Indexed, int, int]]) -> bytes:
    lines = []
    for record, offset, length in indexed:
        data = {"url": record.url, "mime": record.mime, "offset": str(offset), "length": str(length),
                "filename": WARC_NAME}
        if record.status:
            data["status"] = record.status
        if record.digest:
            data["digest"] = record.digest
        lines.append(f"{surt(record.url)} {record.when.strftime('%Y%m%d%H%M%S')} {json.dumps(data)}")
    return "".join(line + "\n" for line in sorted(lines)).encode()


def _pages(indexed: list[tuple[Indexed, int, int]], titles: dict[str, str]) -> tuple[bytes, list[dict]]:
    pages, seen = [], set()
    for record, _, _ in indexed:
        if record.kind == "revisit" or record.url in seen:
            continue
        seen.add(record.url)
        pages.append({"id": hashlib.sha256(record.url.encode()).hexdigest()[:32], "url": record.url,
                      "ts": record.when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "title": titles.get(record.url, record.url)})
    lines = [PAGES_HEADER, *pages]
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode(), pages


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _resource_name(path: str) -> str:
    """A frictionless resource name: lower case letters, digits and . _ -."""
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in path.lower())


def spki(public: Ed25519PublicKey) -> str:
    """The public key as base64 DER SubjectPublicKeyInfo (the WACZ signing layout's `publicKey`)."""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def build(contents: Contents, key: Ed25519PrivateKey, verifier: str, created: datetime | None = None) -> bytes:
    """The signed WACZ package. `verifier` is the key's signed-note verifier key (what
    `facetrail audit key` prints): written into the signature block so a reader can compare."""
    created = created or datetime.now(UTC)
    stamp = created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    warc, indexed = _warc(contents.records, created)
    pages, page_list = _pages(indexed, contents.titles)
    members: dict[str, bytes] = {
        f"archive/{WARC_NAME}": warc,
        "indexes/index.cdxj": _cdxj(indexed),
        "pages/pages.jsonl": pages,
        **contents.files,
    }
    package = {
        "profile": "data-package",
        "wacz_version": WACZ_VERSION,
        "title": contents.title,
        "description": contents.description,
        "created": stamp,
        "modified": stamp,
        "software": SOFTWARE,
        "resources": [{"name": _resource_name(path), "path": path, "hash": _sha256(data), "bytes": len(data)}
                      for path, data in members.items()],
    }
    if page_list:
        package["mainPageURL"], package["mainPageDate"] = page_list[0]["url"], page_list[0]["ts"]
    package_bytes = json.dumps(package, indent=2, ensure_ascii=False).encode()
    digest = _sha256(package_bytes)
    digest_file = {
        "path": PACKAGE,
        "hash": digest,
        "signedData": {
            "hash": digest,
            "created": stamp,
            "software": SOFTWARE,
            "algorithm": "ed25519",
            "signature": base64.b64encode(key.sign(digest.encode())).decode(),
            "publicKey": spki(key.public_key()),
            "verifierKey": verifier,
        },
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path, data in members.items():  # WARC and index stored: replay tools read them by offset
            stored = path.startswith(("archive/", "indexes/")) or path.endswith(".jpg")
            archive.writestr(_info(path, created), data,
                             compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
        archive.writestr(_info(PACKAGE, created), package_bytes, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr(_info(DIGEST, created), json.dumps(digest_file, indent=2).encode(),
                         compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _info(path: str, when: datetime) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, date_time=when.astimezone(UTC).timetuple()[:6])
    info.external_attr = 0o644 << 16
    return info


# --- verifying a package ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    ok: bool
    what: str

    def line(self) -> str:
        return f"{'ok    ' if self.ok else 'FAILED'} {self.what}"


class _Checks(list):
    def add(self, ok: bool, what: str) -> bool:
        self.append(Check(bool(ok), what))
        return bool(ok)


def _read(archive: zipfile.ZipFile, path: str) -> bytes | None:
    """A small member's bytes (index, lists, JSON): None if missing, damaged or over MAX_READ."""
    try:
        if archive.getinfo(path).file_size > MAX_READ:
            return None
        return archive.read(path)
    except (KeyError, zipfile.BadZipFile, zlib.error, OSError, EOFError):
        return None


def _hash_member(archive: zipfile.ZipFile, path: str) -> tuple[str, int] | str:
    """(sha256:..., size) of a member, streamed; or why it cannot be read."""
    hasher, size = hashlib.sha256(), 0
    try:
        with archive.open(path) as handle:
            while chunk := handle.read(CHUNK):
                hasher.update(chunk)
                size += len(chunk)
    except KeyError:
        return "missing from the package"
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
        return f"damaged inside the zip ({exc})"
    return "sha256:" + hasher.hexdigest(), size


def _json_of(data: bytes | None):
    try:
        return json.loads(data) if data is not None else None
    except ValueError:
        return None


def verify(package: bytes | Path, expected_key: str | None = None, tsa_roots: bytes | None = None) -> list[Check]:
    """Check a package offline; every check said, passed or failed (a failure names the file or
    entry). `expected_key`: a signed-note verifier key (`facetrail audit key`) the package and its
    checkpoint must be signed with; without it, the key found is named for the reader to compare.
    `tsa_roots`: PEM root certificate(s) of a time-stamping authority: the checkpoint must carry
    an RFC 3161 timestamp from it (FACETRAIL_AUDIT_TSA_URL), which then dates the package's
    audit entries independently of facetrail's own clock."""
    checks = _Checks()
    try:
        archive = zipfile.ZipFile(io.BytesIO(package) if isinstance(package, bytes) else package)
    except (zipfile.BadZipFile, OSError) as exc:
        checks.add(False, f"the package is not a readable zip file: {exc}")
        return checks
    with archive:
        public = _guarded(checks, "the signature", _check_signature, archive, checks, expected_key)
        listed = _guarded(checks, "the files", _check_files, archive, checks) or set()
        _guarded(checks, "the WACZ layout", _check_layout, archive, checks, listed)
        _guarded(checks, "the audit entries", _check_audit, archive, checks, public, tsa_roots)
    return checks


def _guarded(checks: _Checks, what: str, check, *args):
    """One stage of `verify`: a package built to break the checker fails that stage, never the run."""
    try:
        return check(*args)
    except Exception as exc:  # noqa: BLE001 - whatever a hostile package makes a stage raise
        checks.add(False, f"{what} could not be checked: the package is malformed ({type(exc).__name__}: {exc})")
        return None


def _check_signature(archive: zipfile.ZipFile, checks: _Checks, expected_key: str | None) -> Ed25519PublicKey | None:
    digest_file = _json_of(_read(archive, DIGEST))
    package_bytes = _read(archive, PACKAGE)
    if not checks.add(isinstance(digest_file, dict), f"{DIGEST}: present and readable"):
        return None
    if not checks.add(package_bytes is not None, f"{PACKAGE}: present and readable"):
        return None
    actual = _sha256(package_bytes)
    checks.add(digest_file.get("hash") == actual,
               f"{PACKAGE}: its sha256 {actual[7:19]}... matches {DIGEST}" if digest_file.get("hash") == actual
               else f"{PACKAGE}: changed after signing (sha256 {actual} is not the {digest_file.get('hash')} "
                    f"in {DIGEST})")
    signed = digest_file.get("signedData")
    signed = signed if isinstance(signed, dict) else {}
    try:
        public = serialization.load_der_public_key(base64.b64decode(signed.get("publicKey", "")))
    except (ValueError, TypeError):
        public = None
    if not checks.add(isinstance(public, Ed25519PublicKey), f"{DIGEST}: holds an Ed25519 public key"):
        return None
    try:
        public.verify(base64.b64decode(signed.get("signature", "")), str(signed.get("hash", "")).encode())
        valid = True
    except (InvalidSignature, ValueError, TypeError):
        valid = False
    checks.add(valid and signed.get("hash") == actual,
               f"{DIGEST}: Ed25519 signature of {PACKAGE}'s hash " + (
                   "verifies" if valid and signed.get("hash") == actual else
                   "signs another hash" if valid else "does NOT verify (signature or signed hash changed)"))
    raw = checkpoints.public_bytes(public)
    named = signed.get("verifierKey", "")
    try:
        same = checkpoints.public_bytes(checkpoints.Verifier.parse(named).public) == raw
    except (ValueError, TypeError):
        same = False
    checks.add(same, f"{DIGEST}: signed by {named or 'an unnamed key'}" if same else
               f"{DIGEST}: its verifierKey {named!r} is not the key that signed it")
    if expected_key is not None:
        try:
            pinned = checkpoints.public_bytes(checkpoints.Verifier.parse(expected_key).public)
        except (ValueError, TypeError):
            pinned = None
        checks.add(pinned == raw, "the package is signed by the key you gave" if pinned == raw else
                   "the package is NOT signed by the key you gave (re-signed by someone else?)")
    return public


def _check_files(archive: zipfile.ZipFile, checks: _Checks) -> set[str]:
    package = _json_of(_read(archive, PACKAGE))
    if not checks.add(isinstance(package, dict) and isinstance(package.get("resources"), list),
                      f"{PACKAGE}: lists the package's files"):
        return set()
    checks.add(package.get("wacz_version") == WACZ_VERSION and package.get("profile") == "data-package",
               f"{PACKAGE}: WACZ {package.get('wacz_version')}, profile {package.get('profile')}")
    listed = set()
    for resource in package["resources"]:
        if not isinstance(resource, dict):
            checks.add(False, f"{PACKAGE}: a resource that is not an object: {str(resource)[:80]}")
            continue
        path, want = str(resource.get("path", "")), resource.get("hash")
        listed.add(path)
        got = _hash_member(archive, path)
        if isinstance(got, str):
            checks.add(False, f"file {path}: {got}")
        elif got[0] != want or got[1] != resource.get("bytes"):
            checks.add(False, f"file {path}: TAMPERED: sha256 {got[0]} ({got[1]} bytes) is not the {want} "
                              f"({resource.get('bytes')} bytes) listed in {PACKAGE}")
        else:
            checks.add(True, f"file {path}: sha256 {want[7:19]}... ({got[1]} bytes)")
    for extra in sorted(set(archive.namelist()) - listed - {PACKAGE, DIGEST}):
        checks.add(False, f"file {extra}: not listed in {PACKAGE} (added after signing)")
    return listed


def _check_layout(archive: zipfile.ZipFile, checks: _Checks, listed: set[str]) -> None:
    pages = (_read(archive, "pages/pages.jsonl") or b"").decode("utf-8", "replace").splitlines()
    header = _json_of(pages[0].encode()) if pages else None
    checks.add(isinstance(header, dict) and header.get("format") == "json-pages-1.0",
               f"pages/pages.jsonl: header line, {max(0, len(pages) - 1)} page(s)")
    index = (_read(archive, "indexes/index.cdxj") or b"").decode("utf-8", "replace").splitlines()
    checks.add(index == sorted(index), f"indexes/index.cdxj: {len(index)} line(s), sorted")
    bad = []
    try:
        warc = archive.open(f"archive/{WARC_NAME}")
    except (KeyError, zipfile.BadZipFile, OSError):
        warc = None
    for line in index:
        key, _, rest = line.partition(" ")
        data = _json_of(rest.partition(" ")[2].encode()) or {}
        try:
            offset, length = int(data["offset"]), int(data["length"])
            if warc is None or not 0 < length <= MAX_RECORD:
                raise ValueError("no record there")
            warc.seek(offset)
            described = _describe(warc.read(length))
        except (KeyError, ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile, zlib.error):
            described = None
        if described is None or described.url != data.get("url") or surt(described.url) != key:
            bad.append(data.get("url") or key)
    if warc is not None:
        warc.close()
    checks.add(not bad, "indexes/index.cdxj: every line points at its record in archive/data.warc.gz" if not bad
               else f"indexes/index.cdxj: lines that point at no matching record: {', '.join(bad[:5])}")
    _check_digests(archive, checks)


def _check_digests(archive: zipfile.ZipFile, checks: _Checks) -> None:
    """Every record's WARC-Block-Digest and WARC-Payload-Digest (as written at capture time, or at
    export for a folder's file) against its bytes, streamed."""
    count, bad = 0, []
    try:
        with archive.open(f"archive/{WARC_NAME}") as warc:
            for record in ArchiveIterator(warc, check_digests=True):
                while record.raw_stream.read(CHUNK):
                    pass
                count += 1
                if record.digest_checker.passed is False:
                    bad.append(record.rec_headers.get_header("WARC-Target-URI") or record.rec_type)
    except KeyError:
        return
    except Exception as exc:  # noqa: BLE001 - warcio raises many kinds on a damaged archive
        checks.add(False, f"archive/{WARC_NAME}: cannot be read record by record ({type(exc).__name__}: {exc})")
        return
    checks.add(not bad, f"archive/{WARC_NAME}: {count} records, their block and payload digests match their bytes"
               if not bad else f"archive/{WARC_NAME}: records whose bytes do not match their digests: "
                               + ", ".join(bad[:5]))


def _entry_hash(record: dict) -> str:
    body = {k: record.get(k) for k in ("created_at", "actor", "actor_kind", "action", "purpose", "details")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((str(record.get("prev_hash")) + canonical).encode()).hexdigest()


def _leaf(record: dict) -> bytes:
    body = {k: record.get(k) for k in ("id", "created_at", "actor", "actor_kind", "action", "purpose", "details")}
    return merkle.leaf_hash(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())


def _check_audit(archive: zipfile.ZipFile, checks: _Checks, public: Ed25519PublicKey | None,
                 tsa_roots: bytes | None = None) -> None:
    note = _read(archive, CHECKPOINT)
    lines = (_read(archive, AUDIT_ENTRIES) or b"").decode("utf-8", "replace").splitlines()
    if note is None and not lines:
        return
    try:
        checkpoint = checkpoints.parse(note.decode())[0]
    except (ValueError, IndexError, AttributeError, UnicodeDecodeError):
        checks.add(False, f"{CHECKPOINT}: not a signed checkpoint")
        return
    signed = public is not None and checkpoints.signed_by(
        checkpoint, checkpoints.Verifier(checkpoint.origin, public))
    checks.add(signed, f"{CHECKPOINT}: audit log checkpoint of {checkpoint.size} entries at "
                       f"{checkpoint.time.isoformat()}, " + ("signed by the package's key" if signed else
                                                              "NOT signed by the package's key"))
    _check_timestamp(checkpoint, checks, tsa_roots)
    proven: list[dict] = []
    for n, line in enumerate(lines, 1):
        item = _json_of(line.encode())
        entry = item.get("entry") if isinstance(item, dict) else None
        if not isinstance(entry, dict):
            checks.add(False, f"{AUDIT_ENTRIES} line {n}: not an audit entry")
            continue
        label = f"audit entry {entry.get('id')} ({entry.get('action')} by {entry.get('actor')})"
        if _entry_hash(entry) != entry.get("hash"):
            checks.add(False, f"{label}: TAMPERED: its content does not give its hash {entry.get('hash')}")
            continue
        leaf = _leaf(entry)
        try:
            index, proof = int(item["leaf_index"]), [bytes.fromhex(p) for p in item["proof"]]
            included = merkle.verify_inclusion(index, checkpoint.size, leaf, proof, checkpoint.root)
        except (KeyError, ValueError, TypeError):
            index, included = item.get("leaf_index"), False
        checks.add(included, f"{label}: hash {entry['hash'][:12]}..., " + (
            f"included at leaf {index} of the checkpoint's {checkpoint.size}" if included else
            "its inclusion proof does NOT lead to the checkpoint's tree head"))
        if included:
            proven.append(entry)
    _check_results(archive, checks, proven)


def _check_timestamp(checkpoint: checkpoints.Checkpoint, checks: _Checks, tsa_roots: bytes | None) -> None:
    if tsa_roots is None:
        if timestamps.token_in(checkpoint.note) is not None:
            checks.add(True, f"{CHECKPOINT}: carries an RFC 3161 timestamp (check it with --tsa-root)")
        return
    try:
        when = checkpoints.timestamp(checkpoint, tsa_roots)
    except timestamps.TimestampError as exc:
        checks.add(False, f"{CHECKPOINT}: its RFC 3161 timestamp does NOT verify: {exc}")
        return
    checks.add(when is not None, f"{CHECKPOINT}: timestamped by the time-stamping authority at {when.isoformat()}"
               if when else f"{CHECKPOINT}: carries no RFC 3161 timestamp")


def _check_results(archive: zipfile.ZipFile, checks: _Checks, proven: list[dict]) -> None:
    """Each search's results file and query photo against what its proven audit entries recorded:
    the results shown are among those the search (or the decision that released them) recorded,
    and a query photo in the package is one the search was made with."""
    recorded: dict[int, set[int]] = {}
    queries: dict[int, set[str]] = {}
    for entry in proven:
        details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
        if entry.get("action") == "search":
            search_id = entry.get("id")
            queries[search_id] = {details.get("query_sha256")} | {p.get("sha256") for p in
                                                                   details.get("query_photos") or []}
        elif entry.get("action") == "search.approve":
            search_id = details.get("search_id")
        else:
            continue
        try:
            recorded.setdefault(search_id, set()).update(int(r[0]) for r in details.get("results") or [])
        except (TypeError, ValueError, IndexError, KeyError):
            checks.add(False, f"audit entry {entry.get('id')}: its recorded results cannot be read")
    for name in sorted(n for n in archive.namelist() if n.startswith("evidence/search-") and n.endswith(".json")):
        body = _json_of(_read(archive, name))
        body = body if isinstance(body, dict) else {}
        search_id = body.get("search_id")
        faces = [r.get("face_id") for r in (body.get("result") or {}).get("results") or []]
        if search_id not in queries:
            checks.add(False, f"file {name}: no proven audit entry of search {search_id} in the package")
            continue
        unrecorded = [f for f in faces if f not in recorded.get(search_id, set())]
        checks.add(not unrecorded, f"file {name}: its {len(faces)} result(s) are among those search {search_id}'s "
                                   "audit entries recorded" if not unrecorded else
                   f"file {name}: results {unrecorded} were never recorded by search {search_id}'s audit entries")
    every = set().union(*queries.values()) if queries else set()
    for name in sorted(n for n in archive.namelist() if n.startswith("query/")):
        got = _hash_member(archive, name)
        sha = got[0][7:] if isinstance(got, tuple) else None
        checks.add(sha in every, f"file {name}: the photo searched with (its sha256 is a search's recorded query)"
                   if sha in every else f"file {name}: NOT a photo any search in the package was made with")
