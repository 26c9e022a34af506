"""Evidence packages: an earlier search (or every search of a case) as a signed WACZ file that
verifies offline (search/wacz.py lays it out and checks it).

A package holds what the caller may see of the search and nothing more (rules.visible_search,
as for its results page): its results with where each image was found, the face crops, the
captured pages and images (HTTP responses kept at crawl time, ingest/capture.py; a folder
source's file itself as a WARC `resource` record), the query photos' sha256 (the photo only if
the caller hands it in again), the search's audit entries with inclusion proofs against a signed
checkpoint, its approval and the confirmations of its matches, and a CASE/UCO JSON-LD description
of the investigative action. The package is signed with the audit checkpoints' Ed25519 key, so
one public key checks both. Exporting is recorded (`evidence.export`, with the package's sha256).

A search the caller may not see answers `not_found`, like an id of nothing; for a case, the
caller is someone who may see the case (cases._visible), and the package holds the results of
those of its searches the caller may see; auditors and supervisors get every audit entry of the
case, others the case's own record and the entries of the searches they may see.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select

from .. import __version__
from ..errors import Refused
from ..governance import approvals, audit, audittree, cases, checkpoints
from ..governance.actors import Actor
from ..store import Approval, AuditEntry, Confirmation, Image, Location, Source
from ..store.media import MediaStore
from ..store.models import Appearance
from . import wacz
from .rules import SUBJECT_ACCESS, no_such_search, visible_search
from .service import Searcher

DECISIONS = ("search.approve", "search.deny")
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp", "BMP": "image/bmp",
        "TIFF": "image/tiff", "MPO": "image/jpeg"}
MEDIA_TYPE = "application/wacz+zip"


class EvidenceRefused(Refused):
    code = "evidence_refused"


@dataclass
class Package:
    """An exported package: its bytes, sha256, a file name, and what it holds."""

    data: bytes
    sha256: str
    filename: str
    searches: list[int]
    notes: list[str]
    audit_id: int


@dataclass
class _Found:
    """What was collected for a package, before it is laid out."""

    searches: list[dict] = field(default_factory=list)  # per visible search: entry, result, shown faces
    entries: dict[int, AuditEntry] = field(default_factory=dict)
    approvals: dict[int, dict] = field(default_factory=dict)
    confirmations: list[dict] = field(default_factory=list)
    case: dict | None = None
    locations: list[tuple[int, str, str, int, str]] = field(default_factory=list)  # image, sha, fmt, src, loc
    sources: dict[int, str] = field(default_factory=dict)  # source id -> kind
    pages: dict[tuple[int, str], list[tuple[str, str]]] = field(default_factory=dict)  # (src, image url) -> pages


def signing_key(session, settings):
    """The audit checkpoints' Ed25519 key (checkpoints.load_key); made now only for a log that has
    never been checkpointed (as the server does at its first start), never for an old log."""
    try:
        return checkpoints.load_key(settings)
    except checkpoints.KeyMissing:
        if checkpoints.latest(session) is not None or settings.audit_key:
            raise
        return checkpoints.create_key(settings.audit_key_path)


def case_ref_of(searcher: Searcher, actor: Actor, case_id: int) -> str:
    """The reference of case `case_id` if `actor` may see it (URLs name cases by id); else not_found."""
    with searcher.db.session() as session:
        return cases.ref_of(session, actor, case_id)


def export_search(searcher: Searcher, actor: Actor, search_id: int, query_photo: bytes | None = None) -> Package:
    """The package of search `search_id`, for someone who may see it now; `not_found` otherwise."""
    with searcher.db.session() as session:
        entry = visible_search(session, actor, search_id).entry
        if entry.purpose == SUBJECT_ACCESS:  # a subject access report has its own release (subject-report)
            raise no_such_search(search_id)
        ref = entry.details.get("case_ref")
    return _export(searcher, actor, [search_id], ref, case_mode=False, query_photo=query_photo)


def export_case(searcher: Searcher, actor: Actor, case_ref: str, query_photo: bytes | None = None) -> Package:
    """The package of every search of case `case_ref` the caller may see (members, supervisors,
    auditors see the case; anyone else is told it does not exist)."""
    with searcher.db.session() as session:
        ref = cases.show(session, actor, case_ref)["case_ref"]
        ids = [i for i, purpose in session.execute(select(AuditEntry.id, AuditEntry.purpose).where(
            AuditEntry.action == "search", AuditEntry.details["case_ref"].as_string() == ref).order_by(AuditEntry.id))
            if purpose != SUBJECT_ACCESS]
    visible = [i for i in ids if searcher.may_see(actor, i)]
    return _export(searcher, actor, visible, ref, case_mode=True, query_photo=query_photo)


# --- collecting ---------------------------------------------------------------------------------


def _collect(searcher: Searcher, actor: Actor, ids: list[int], ref: str | None, case_mode: bool) -> _Found:
    found = _Found()
    for search_id in ids:
        result = searcher.results_of(actor, search_id).to_dict()
        shown = searcher.shown_media(actor, search_id)
        found.searches.append({"id": search_id, "result": result, "faces": shown.faces})
    with searcher.db.session() as session:
        query = select(AuditEntry).where(AuditEntry.id.in_(ids)) if ids else None
        picked = list(session.scalars(query)) if query is not None else []
        if ids:
            picked += session.scalars(select(AuditEntry).where(
                AuditEntry.action.in_((*DECISIONS, "match.confirm")),
                AuditEntry.details["search_id"].as_integer().in_(ids)))
        watches = {e.details.get("watch_id") for e in picked if e.action == "search"} - {None}
        if watches:  # a watch's hit: the watch's request, approval, renewals (its authorisation)
            picked += session.scalars(select(AuditEntry).where(
                AuditEntry.action.like("watch.%"), AuditEntry.details["watch_id"].as_integer().in_(watches)))
        if ref:
            of_case = select(AuditEntry).where(AuditEntry.details["case_ref"].as_string() == ref)
            if not (case_mode and actor.can("audit.read")):  # the case's own record; all of it for auditors
                of_case = of_case.where(AuditEntry.action.like("case.%"))
            picked += session.scalars(of_case)
            if case_mode and actor.can("audit.read"):
                searches = [e.id for e in picked if e.action == "search"]
                if searches:
                    picked += session.scalars(select(AuditEntry).where(
                        AuditEntry.action.in_(DECISIONS), AuditEntry.details["search_id"].as_integer().in_(searches)))
            try:
                found.case = cases.describe(session, cases.get(session, ref))
            except cases.CaseNotFound:
                found.case = None
        found.entries = {e.id: e for e in sorted(picked, key=lambda e: e.id)}
        for approval in session.scalars(select(Approval).where(Approval.search_id.in_(ids))) if ids else []:
            found.approvals[approval.search_id] = approvals.describe(approval)
        face_ids = [f for s in found.searches for f in s["faces"]]
        if ref and face_ids:
            found.confirmations = [
                {"face_id": c.face_id, "search_id": c.search_id, "username": c.username,
                 "at": c.created_at.isoformat(), "case_ref": c.case_ref}
                for c in session.scalars(select(Confirmation).where(
                    Confirmation.case_ref == ref, Confirmation.face_id.in_(face_ids)).order_by(Confirmation.id))]
        image_ids = {r["image"]["id"] for s in found.searches
                     for r in s["result"]["results"] + s["result"].get("copies", [])}  # a copy search: its copies
        if image_ids:
            rows = session.execute(
                select(Image.id, Image.sha256, Image.format, Location.source_id, Location.location, Source.kind)
                .join(Location, Location.image_id == Image.id).join(Source, Source.id == Location.source_id)
                .where(Image.id.in_(image_ids)).order_by(Image.id, Location.id)).all()
            found.locations = [(i, sha, fmt, source, loc) for i, sha, fmt, source, loc, _ in rows]
            found.sources = {source: kind for _, _, _, source, _, kind in rows}
            for page in session.scalars(select(Appearance).where(
                    Appearance.image_url.in_([loc for *_, loc in found.locations]))):
                found.pages.setdefault((page.source_id, page.image_url), []).append((page.page_url, page.page_title))
    return found


def _proofs(searcher: Searcher, entry_ids: list[int]) -> tuple[list[dict], str, object]:
    """Inclusion proofs of the entries against a signed checkpoint that covers them all (one is
    signed now if the latest does not), the checkpoint's note, and the signing key."""
    settings = searcher.settings
    with searcher.db.session() as session, session.begin():
        key = signing_key(session, settings)
        audit.catch_up(session)  # entries from before the tree (migration 0013), if it is still empty
        positions = [audittree.position_of(session, i) for i in entry_ids]
        last = checkpoints.latest(session)
        newest = max((p for p in positions if p is not None), default=-1)
        if last is None or last.size <= newest:
            last = checkpoints.make(session, settings, key)  # witnesses get it from the checkpointer
        proofs = []
        for entry_id in entry_ids:
            proof = checkpoints.prove(session, entry_id).as_json()
            proof.pop("checkpoint")  # the note is in the package once (audit/checkpoint.txt)
            proofs.append({**proof, "tree_size": last.size})
        return proofs, last.note, key


def _captures(settings, source_id: int, urls: list[str]) -> tuple[list[bytes], list[str]]:
    """The WARC records kept at crawl time for `urls` of a source (ingest/capture.find): of each URL
    (and of each URL its fetches were redirected to) the first capture and the newest, each with
    its request record, as stored; and a note for each URL without one."""
    from ..ingest import capture

    records, notes, taken = [], [], set()
    for url, found in capture.find(settings, source_id, urls).items():
        if not found:
            notes.append(f"no capture kept for URL {url}")
            continue
        by_url: dict[str, list] = {}
        for captured in found:  # oldest first
            by_url.setdefault(captured.url, []).append(captured)
        for hops in by_url.values():
            for captured in {id(c): c for c in (hops[0], hops[-1])}.values():
                if captured.record_id in taken:
                    continue
                try:
                    records.append(captured.read())
                except OSError:
                    notes.append(f"the capture of URL {captured.url} of {captured.fetched_at.isoformat()} could "
                                 "no longer be read (rotated away meanwhile)")
                    continue
                taken.add(captured.record_id)
    return records, notes


def _file_record(path_text: str, sha: str, fmt: str, seen: datetime | None = None) -> tuple[bytes | None, str | None]:
    """A folder source's image as a WARC resource record (file:// URI), if the file still holds the
    bytes that were indexed; else a note saying why it is left out."""
    path = Path(path_text)
    try:
        data = path.read_bytes()
    except OSError:
        return None, f"no copy of {path_text}: the file is no longer there"
    if hashlib.sha256(data).hexdigest() != sha:
        return None, f"no copy of {path_text}: the file has changed since it was indexed"
    return wacz.resource_record(path.resolve().as_uri(), data, MIME.get((fmt or "").upper(),
                                                                         "application/octet-stream"), seen), None


def _archive(searcher: Searcher, found: _Found) -> tuple[list[bytes], dict[str, str], list[str]]:
    """The records to archive, page titles by URL, and notes on what could not be included."""
    records, titles, notes = [], {}, []
    wanted: dict[int, list[str]] = {}
    done: set[tuple[int, str]] = set()
    for image_id, sha, fmt, source, location in found.locations:
        if (source, location) in done:
            continue
        done.add((source, location))
        if found.sources.get(source) == "folder" or urlsplit(location).scheme not in ("http", "https"):
            record, note = _file_record(location, sha, fmt)
            records += [record] if record else []
            notes += [note] if note else []
            continue
        urls = wanted.setdefault(source, [])
        for page_url, title in found.pages.get((source, location), []):
            titles[page_url] = title
            if page_url not in urls:
                urls.append(page_url)
        if location not in urls:
            urls.append(location)
    for source, urls in wanted.items():
        got, missing = _captures(searcher.settings, source, urls)
        records += got
        notes += missing
    return records, titles, notes


# --- laying out ---------------------------------------------------------------------------------


def _query_photo(found: _Found, photo: bytes | None) -> tuple[str, bytes] | None:
    if photo is None:
        return None
    sha = hashlib.sha256(photo).hexdigest()
    known = {p.get("sha256") for s in found.searches for p in s["result"]["query"].get("photos") or []}
    known |= {s["result"]["query"].get("sha256") for s in found.searches}
    if sha not in known:
        raise EvidenceRefused(f"that photo (sha256 {sha[:16]}...) is not the query photo of "
                              f"{'this search' if len(found.searches) == 1 else 'these searches'}: only the "
                              "photo searched with may be added", "not_the_query_photo")
    ext = ".jpg" if photo[:3] == b"\xff\xd8\xff" else ".png" if photo[:8] == b"\x89PNG\r\n\x1a\n" else ".bin"
    return f"query/{sha}{ext}", photo


def _files(searcher: Searcher, actor: Actor, found: _Found, proofs: list[dict], note: str, verifier: str,
           notes: list[str], photo: tuple[str, bytes] | None, now: datetime, package_id: str) -> dict[str, bytes]:
    media = MediaStore(searcher.settings.media_dir)
    files: dict[str, bytes] = {}
    summary = []
    for search in found.searches:
        search_id, result = search["id"], search["result"]
        entry = found.entries[search_id]
        for face_id, (sha, idx) in sorted(search["faces"].items()):
            path = media.crop_path(sha, idx)
            if path.is_file():
                files[f"crops/search-{search_id}-face-{face_id}.jpg"] = path.read_bytes()
        body = {"search_id": search_id, "result": result, "approval": found.approvals.get(search_id),
                "confirmations": [c for c in found.confirmations if c["face_id"] in search["faces"]]}
        files[f"evidence/search-{search_id}.json"] = _json(body)
        photos = [p["sha256"] for p in result["query"].get("photos") or []] or [result["query"]["sha256"]]
        summary.append({"search_id": search_id, "at": entry.created_at.isoformat(), "by": entry.actor,
                        "purpose": entry.purpose, "justification": entry.details.get("justification"),
                        "case_ref": entry.details.get("case_ref"), "query_sha256": photos,
                        "model": entry.details.get("model"), "index": entry.details.get("index"),
                        "results": len(result["results"]), "file": f"evidence/search-{search_id}.json"})
    if photo is not None:
        files[photo[0]] = photo[1]
    files[wacz.AUDIT_ENTRIES] = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in proofs).encode()
    files[wacz.CHECKPOINT] = note.encode()
    files["audit/verifier-key.txt"] = (verifier + "\n").encode()
    manifest = {
        "package": package_id, "software": wacz.SOFTWARE, "exported_at": now.isoformat(),
        "exported_by": {"username": actor.username, "role": actor.role, "via": actor.via},
        "case": found.case, "searches": summary, "query_photo_included": photo is not None,
        "audit_entries": len(proofs), "notes": notes,
        "how_to_verify": "facetrail evidence verify PACKAGE --key VERIFIER_KEY (audit/verifier-key.txt; compare "
                         "it with `facetrail audit key` of the installation)",
    }
    files["evidence/manifest.json"] = _json(manifest)
    files["evidence/case-uco.jsonld"] = _json(case_uco(actor, found, summary, now, package_id, photo is not None))
    return files


def _json(data) -> bytes:
    return json.dumps(data, indent=2, ensure_ascii=False).encode()


def _export(searcher: Searcher, actor: Actor, ids: list[int], ref: str | None, *, case_mode: bool,
            query_photo: bytes | None) -> Package:
    found = _collect(searcher, actor, ids, ref, case_mode)
    photo = _query_photo(found, query_photo)
    proofs, note, key = _proofs(searcher, list(found.entries))
    verifier = checkpoints.Verifier.of(searcher.settings, key).text()
    records, titles, notes = _archive(searcher, found)
    now, package_id = datetime.now(UTC), str(uuid.uuid4())
    files = _files(searcher, actor, found, proofs, note, verifier, notes, photo, now, package_id)
    what = f"case {ref}" if case_mode else f"search {ids[0]}"
    contents = wacz.Contents(records=records, titles=titles, files=files, title=f"facetrail evidence: {what}",
                             description=f"Exported by {actor.username} at {now.isoformat(timespec='seconds')}")
    data = wacz.build(contents, key, verifier, now)
    sha = hashlib.sha256(data).hexdigest()
    purpose = (found.case or {}).get("purpose") or next((found.entries[i].purpose for i in ids), None)
    with searcher.db.session() as session, session.begin():
        entry = audit.record(session, actor, "evidence.export", purpose, case_ref=ref,
                             searches=ids, scope="case" if case_mode else "search", package=package_id,
                             package_sha256=sha, bytes=len(data), audit_entries=len(proofs),
                             captured_records=len(records), query_photo_included=photo is not None,
                             missing=len(notes))
        audit_id = entry.id
    slug = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in (ref or "")) \
        if case_mode else str(ids[0])  # ASCII: it goes into a Content-Disposition header
    name = f"facetrail-{'case' if case_mode else 'search'}-{slug}-{now:%Y%m%dT%H%M%SZ}.wacz"
    return Package(data, sha, name, ids, notes, audit_id)


# --- CASE/UCO -----------------------------------------------------------------------------------

CONTEXT = {
    "kb": "urn:facetrail:",
    "case-investigation": "https://ontology.caseontology.org/case/investigation/",
    "uco-action": "https://ontology.unifiedcyberontology.org/uco/action/",
    "uco-core": "https://ontology.unifiedcyberontology.org/uco/core/",
    "uco-identity": "https://ontology.unifiedcyberontology.org/uco/identity/",
    "uco-observable": "https://ontology.unifiedcyberontology.org/uco/observable/",
    "uco-tool": "https://ontology.unifiedcyberontology.org/uco/tool/",
    "uco-types": "https://ontology.unifiedcyberontology.org/uco/types/",
    "uco-vocabulary": "https://ontology.unifiedcyberontology.org/uco/vocabulary/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}


def _time(value: str) -> dict:
    return {"@type": "xsd:dateTime", "@value": value}


def _hash(sha: str) -> dict:
    return {"@type": "uco-types:Hash",
            "uco-types:hashMethod": {"@type": "uco-vocabulary:HashNameVocab", "@value": "SHA256"},
            "uco-types:hashValue": {"@type": "xsd:hexBinary", "@value": sha}}


def _file(node_id: str, name: str, sha: str, description: str) -> dict:
    return {"@id": node_id, "@type": "uco-observable:File", "uco-core:name": name,
            "uco-core:description": description,
            "uco-core:hasFacet": [{"@id": f"{node_id}-content", "@type": "uco-observable:ContentDataFacet",
                                   "uco-observable:hash": [_hash(sha)]}]}


def case_uco(actor: Actor, found: _Found, summary: list[dict], now: datetime, package_id: str,
             photo_included: bool) -> dict:
    """The investigative actions as CASE/UCO JSON-LD: who searched, when, why (purpose and
    justification), under which case and authorisation, with which face model and gallery (index
    kind, faces, snapshot), on which query (its sha256) and with what results; and the export."""
    kb = f"kb:{package_id}"
    case = found.case or {}
    graph: list[dict] = [
        {"@id": f"{kb}-tool-facetrail", "@type": "uco-tool:Tool", "uco-core:name": "facetrail",
         "uco-tool:toolType": "face search engine", "uco-tool:version": __version__},
    ]
    people = {s["by"] for s in summary} | {actor.username}
    graph += [{"@id": f"{kb}-identity-{name}", "@type": "uco-identity:Identity", "uco-core:name": name}
              for name in sorted(people)]
    actions = []
    for search in summary:
        sid = search["search_id"]
        index = search.get("index") or {}
        model_id, query_ids = f"{kb}-model-{search.get('model')}", []
        graph.append({"@id": model_id, "@type": "uco-tool:Tool", "uco-core:name": search.get("model"),
                      "uco-tool:toolType": "face recognition model"})
        about = [f"model {index.get('model', search.get('model'))}"] + [
            f"{name} {index[key]}" for key, name in (("version", "version"), ("snapshot", "snapshot"),
                                                      ("newest_face", "newest face id")) if index.get(key) is not None]
        size = f"of {index['size']} faces" if index.get("size") is not None else "of faces"
        graph.append({"@id": f"{kb}-gallery-{sid}", "@type": "uco-core:Annotation",
                      "uco-core:statement": f"searched a {index.get('kind')} index {size} ({', '.join(about)})",
                      "uco-core:object": [{"@id": model_id}]})
        for n, sha in enumerate(search["query_sha256"]):
            query_ids.append(f"{kb}-query-{sid}-{n}")
            graph.append(_file(query_ids[-1], f"query photo {n + 1} of search {sid}", sha,
                               "the photo searched with" + ("" if photo_included else " (not in the package: only "
                                                                                      "its sha256)")))
        graph.append({"@id": f"{kb}-results-{sid}", "@type": "uco-core:UcoObject",
                      "uco-core:name": search["file"],
                      "uco-core:description": f"{search['results']} result(s): leads, not identifications"})
        actions.append(f"{kb}-search-{sid}")
        graph.append({
            "@id": actions[-1], "@type": "case-investigation:InvestigativeAction",
            "uco-core:name": f"face search {sid}",
            "uco-core:description": f"purpose {search.get('purpose')}: {search.get('justification')}",
            "uco-action:startTime": _time(search["at"]), "uco-action:endTime": _time(search["at"]),
            "uco-action:performer": {"@id": f"{kb}-identity-{search['by']}"},
            "uco-action:instrument": [{"@id": f"{kb}-tool-facetrail"}, {"@id": model_id}],
            "uco-action:environment": {"@id": f"{kb}-gallery-{sid}"},
            "uco-action:object": [{"@id": q} for q in query_ids],
            "uco-action:result": [{"@id": f"{kb}-results-{sid}"}],
        })
    actions.append(f"{kb}-export")
    graph.append({
        "@id": actions[-1], "@type": "case-investigation:InvestigativeAction",
        "uco-core:name": "evidence export",
        "uco-core:description": "these results packaged and signed (WACZ, Ed25519) with their audit entries",
        "uco-action:startTime": _time(now.isoformat()),
        "uco-action:performer": {"@id": f"{kb}-identity-{actor.username}"},
        "uco-action:instrument": [{"@id": f"{kb}-tool-facetrail"}],
        "uco-action:object": [{"@id": a} for a in actions[:-1]],
    })
    investigation = {"@id": f"{kb}-investigation", "@type": "case-investigation:Investigation",
                     "uco-core:name": case.get("case_ref") or (summary[0]["case_ref"] if summary else None),
                     "uco-core:description": case.get("title"),
                     "case-investigation:focus": case.get("purpose"),
                     "case-investigation:investigationStatus": case.get("state"),
                     "uco-core:object": [{"@id": a} for a in actions]}
    if case.get("authority"):
        graph.append({"@id": f"{kb}-authorisation", "@type": "case-investigation:Authorization",
                      "case-investigation:authorizationType": case["authority"],
                      "case-investigation:authorizationIdentifier": [case.get("authorisation_ref") or "pending"],
                      "uco-core:description": f"authorised on {case.get('authorised_on')}, case expires "
                                              f"{case.get('expires_on')}"})
        investigation["case-investigation:relevantAuthorization"] = [{"@id": f"{kb}-authorisation"}]
    graph.append(investigation)
    return {"@context": CONTEXT, "@graph": graph}
