"""Evidence packages (issue 18 items 2 and 3): a real search over the dev photos exported as a signed
WACZ file that `facetrail evidence verify` accepts offline, and rejects naming what was changed (a
member file, the signature, an audit entry); only someone who may see the search may export it
(anyone else: the 404 of an id of nothing); every export is in the audit log."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import re
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner
from warcio.archiveiterator import ArchiveIterator

from facetrail.cli import app as cli
from facetrail.errors import Refused
from facetrail.governance import checkpoints
from facetrail.governance.actors import Actor
from facetrail.index import open_index
from facetrail.search import Searcher, evidence, wacz
from facetrail.search.service import confirm_match
from facetrail.store import AuditEntry
from facetrail.web import create_app

from .support import Route, add_accounts, cli_base, login, open_case, serve
from .test_audit_timestamps import tsa as tsa  # noqa: PLC0414 - a local time-stamping authority (fixture)
from .support import as_user as cli_user

CASE = "EV-1"
IVAN, IRIS = Actor("ivan", "investigator", "test"), Actor("iris", "investigator", "test")
SUE, OTTO = Actor("sue", "supervisor", "test"), Actor("otto", "auditor", "test")
PERSON = "tom_hanks"


@pytest.fixture(scope="module")
def searcher(dev_index, engine):
    open_case(dev_index.db, CASE, members=("ivan", "iris", "sue"))
    checkpoints.ensure_key(dev_index.settings)
    return Searcher(dev_index.settings, dev_index.db, open_index(dev_index.settings, dev_index.db), engine)


@pytest.fixture(scope="module")
def verifier(searcher) -> str:
    return checkpoints.Verifier.of(searcher.settings, checkpoints.load_key(searcher.settings)).text()


def query_photo(dev_images) -> bytes:
    return [d for d in dev_images if d.identity == PERSON][0].path.read_bytes()


def search(searcher, dev_images, actor=IVAN, justification="evidence for the file"):
    result = searcher.search(query_photo(dev_images), actor=actor, purpose="source-verification",
                             justification=justification, case_ref=CASE)
    assert result.error is None and result.results, result.error
    return result


@pytest.fixture(scope="module")
def found(searcher, dev_images):
    """ivan's search, one of its matches confirmed by ivan, exported by ivan."""
    result = search(searcher, dev_images)
    confirm_match(searcher.db, IVAN, result.audit_id, result.results[0].face_id)
    return result, evidence.export_search(searcher, IVAN, result.audit_id), searcher.settings


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def repack(data: bytes, changed: dict[str, bytes]) -> bytes:
    """The same zip with some members' bytes replaced."""
    files = {**members(data), **changed}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, value in files.items():
            archive.writestr(name, value)
    return out.getvalue()


def flip(data: bytes, at: int | None = None) -> bytes:
    at = len(data) // 2 if at is None else at
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def found_settings(found):
    return found[2]


def digest_created(files) -> str:
    return json.loads(files["datapackage-digest.json"])["signedData"]["created"]


def failures(checks) -> list[str]:
    return [c.what for c in checks if not c.ok]


def test_an_exported_search_verifies_offline_and_holds_what_was_found(found, searcher, dev_images, dev_index,
                                                                      verifier, tmp_path):
    result, package, _ = found
    assert hashlib.sha256(package.data).hexdigest() == package.sha256 and package.searches == [result.audit_id]
    checks = wacz.verify(package.data, verifier)
    assert failures(checks) == [] and len(checks) > 10
    said = [c.what for c in checks]
    images = len({m.image["id"] for m in result.results})
    assert f"archive/data.warc.gz: {images + 1} records, their block and payload digests match their bytes" \
           in said  # the warcinfo record and each result's image file
    assert f"file evidence/search-{result.audit_id}.json: its {len(result.results)} result(s) are among " \
           f"those search {result.audit_id}'s audit entries recorded" in said
    files = members(package.data)

    # the WACZ layout: every file listed with its sha256, the pages header, a sorted index
    listed = json.loads(files["datapackage.json"])
    assert listed["wacz_version"] == "1.1.1" and listed["profile"] == "data-package"
    assert {r["path"] for r in listed["resources"]} == set(files) - {"datapackage.json", "datapackage-digest.json"}
    assert all(len(r["path"].split("/")) == 2 for r in listed["resources"])  # one folder deep, as WACZ tools read
    assert all(re.fullmatch(r"[a-z0-9._-]+", r["name"]) for r in listed["resources"])  # frictionless names
    assert listed["created"] == digest_created(files)
    for resource in listed["resources"]:
        assert resource["hash"] == "sha256:" + hashlib.sha256(files[resource["path"]]).hexdigest()
    digest = json.loads(files["datapackage-digest.json"])
    assert digest["hash"] == "sha256:" + hashlib.sha256(files["datapackage.json"]).hexdigest()
    assert digest["signedData"]["verifierKey"] == verifier  # the audit checkpoints' key signed it
    pages = files["pages/pages.jsonl"].decode().splitlines()
    assert json.loads(pages[0])["format"] == "json-pages-1.0" and len(pages) > 1
    index = files["indexes/index.cdxj"].decode().splitlines()
    assert index == sorted(index) and len(index) >= 1

    # the folder source's images themselves, as resource records with file:// URIs
    records = {r.rec_headers.get_header("WARC-Target-URI"): r.content_stream().read()
               for r in ArchiveIterator(io.BytesIO(files["archive/data.warc.gz"])) if r.rec_type == "resource"}
    first = result.results[0].image["location"]
    assert records[f"file://{first}"] == open(first, "rb").read()
    assert all(uri.startswith("file://") for uri in records)

    # results, crops, the query's sha256 (never the photo), audit entries, confirmations
    shown = json.loads(files[f"evidence/search-{result.audit_id}.json"])
    assert [r["face_id"] for r in shown["result"]["results"]] == [m.face_id for m in result.results]
    assert shown["confirmations"][0]["username"] == "ivan"
    crops = [n for n in files if n.startswith("crops/")]
    assert len(crops) == len(result.results) and all(files[n][:3] == b"\xff\xd8\xff" for n in crops)
    photo = query_photo(dev_images)
    assert hashlib.sha256(photo).hexdigest() in files["evidence/manifest.json"].decode()
    assert not any(photo[:4096] in value for value in files.values())
    entries = [json.loads(line)["entry"] for line in files["audit/entries.jsonl"].decode().splitlines()]
    actions = {e["action"] for e in entries}
    assert {"search", "match.confirm", "case.open"} <= actions
    searched = next(e for e in entries if e["action"] == "search")
    assert searched["id"] == result.audit_id

    # the CASE/UCO description: who, when, why, the case, the model and the gallery searched
    uco = json.loads(files["evidence/case-uco.jsonld"])
    graph = {node["@id"]: node for node in uco["@graph"]}
    action = next(n for n in graph.values() if n.get("uco-core:name") == f"face search {result.audit_id}")
    assert action["@type"] == "case-investigation:InvestigativeAction"
    assert graph[action["uco-action:performer"]["@id"]]["uco-core:name"] == "ivan"
    assert "evidence for the file" in action["uco-core:description"]
    gallery = graph[action["uco-action:environment"]["@id"]]["uco-core:statement"]
    index = searched["details"]["index"]
    assert f"a {index['kind']} index of {index['size']} faces" in gallery and index["snapshot"] in gallery
    model = graph[action["uco-action:instrument"][1]["@id"]]
    assert model["uco-core:name"] == searched["details"]["model"] == searcher.engine.model_name
    investigation = next(n for n in graph.values() if n["@type"] == "case-investigation:Investigation")
    assert investigation["uco-core:name"] == CASE

    # the export itself is in the audit log, with the package's sha256
    with dev_index.db.session() as session:
        entry = session.get(AuditEntry, package.audit_id)
    assert entry.action == "evidence.export" and entry.actor == "ivan"
    assert entry.details["package_sha256"] == package.sha256 and entry.details["searches"] == [result.audit_id]

    # the command line says what it checked, line by line
    path = tmp_path / "package.wacz"
    path.write_bytes(package.data)
    run = CliRunner().invoke(cli, ["evidence", "verify", str(path), "--key", verifier])
    assert run.exit_code == 0, run.output
    assert "file evidence/manifest.json" in run.output and f"audit entry {result.audit_id}" in run.output
    assert run.output.rstrip().splitlines()[-1].startswith("OK:")


def test_a_changed_byte_anywhere_fails_verification_naming_it(found, verifier, tmp_path):
    result, package, _ = found
    files = members(package.data)
    name = f"evidence/search-{result.audit_id}.json"

    member = repack(package.data, {name: flip(files[name])})
    assert any(name in f and "TAMPERED" in f for f in failures(wacz.verify(member, verifier)))
    path = tmp_path / "member.wacz"
    path.write_bytes(member)
    run = CliRunner().invoke(cli, ["evidence", "verify", str(path)])
    assert run.exit_code == 1 and f"FAILED file {name}" in run.output

    digest = json.loads(files["datapackage-digest.json"])
    signature = bytearray(digest["signedData"]["signature"].encode())
    signature[5] = ord("A") if signature[5] != ord("A") else ord("B")
    digest["signedData"]["signature"] = signature.decode()
    resigned = repack(package.data, {"datapackage-digest.json": json.dumps(digest).encode()})
    assert any("signature" in f and "NOT verify" in f for f in failures(wacz.verify(resigned)))

    lines = files["audit/entries.jsonl"].decode().splitlines()
    item = json.loads(lines[0])
    item["entry"]["purpose"] = item["entry"]["purpose"][:-1] + "X"  # one character of one entry
    lines[0] = json.dumps(item)
    edited = repack(package.data, {"audit/entries.jsonl": ("\n".join(lines) + "\n").encode()})
    problems = failures(wacz.verify(edited, verifier))
    assert any("file audit/entries.jsonl: TAMPERED" in f for f in problems)
    assert any(f.startswith(f"audit entry {item['entry']['id']} ") and "TAMPERED" in f for f in problems)

    # a record whose body no longer matches the digest written when it was captured, even in a
    # package hashed and signed afresh, is named
    record = wacz.resource_record("file:///photos/a.jpg", b"the bytes as captured" * 50, "image/jpeg")
    altered = gzip.compress(gzip.decompress(record).replace(b"as captured", b"as altered!", 1))
    key = checkpoints.load_key(found_settings(found))
    rebuilt = wacz.build(wacz.Contents(records=[altered]), key, verifier)
    assert failures(wacz.verify(rebuilt, verifier)) == [
        "archive/data.warc.gz: records whose bytes do not match their digests: file:///photos/a.jpg"]

    other = checkpoints.Verifier.parse(checkpoints.verifier_key("someone/else", bytes(32)))
    assert "NOT signed by the key you gave" in " ".join(failures(wacz.verify(package.data, other.text())))


def test_only_who_may_see_the_search_may_export_it_anyone_else_gets_not_found(found, searcher, dev_index):
    result, *_ = found

    def exports() -> int:
        with dev_index.db.session() as session:
            return len(session.scalars(select(AuditEntry.id).where(AuditEntry.action == "evidence.export")).all())

    before = exports()
    for actor, search_id in [(IRIS, result.audit_id), (OTTO, result.audit_id), (IVAN, 2**31 - 2), (IVAN, 0)]:
        with pytest.raises(Refused) as refused:
            evidence.export_search(searcher, actor, search_id)
        assert refused.value.code == "not_found" and str(refused.value) == f"there is no search {search_id}"
    assert exports() == before
    supervised = evidence.export_search(searcher, SUE, result.audit_id)  # supervisors see every search
    assert supervised.searches == [result.audit_id] and exports() == before + 1


def test_the_query_photo_is_included_only_when_given_and_only_if_it_is_the_one(found, searcher, dev_images,
                                                                             verifier):
    result, *_ = found
    photo = query_photo(dev_images)
    package = evidence.export_search(searcher, IVAN, result.audit_id, photo)
    sha = hashlib.sha256(photo).hexdigest()
    added = [value for name, value in members(package.data).items() if name.startswith(f"query/{sha}.")]
    assert added == [photo]
    assert failures(wacz.verify(package.data, verifier)) == []
    other = [d for d in dev_images if d.identity == PERSON][1].path.read_bytes()
    with pytest.raises(Refused) as refused:
        evidence.export_search(searcher, IVAN, result.audit_id, other)
    assert refused.value.code == "not_the_query_photo"


def test_a_case_package_holds_the_searches_each_caller_may_see(found, searcher, dev_images, verifier):
    ivans, *_ = found
    iris = search(searcher, dev_images, actor=IRIS, justification="second look")
    by_sue = evidence.export_case(searcher, SUE, CASE)
    assert {ivans.audit_id, iris.audit_id} <= set(by_sue.searches)
    by_iris = evidence.export_case(searcher, IRIS, CASE)
    assert iris.audit_id in by_iris.searches and ivans.audit_id not in by_iris.searches
    files = members(by_iris.data)
    assert f"evidence/search-{ivans.audit_id}.json" not in files
    ids = {json.loads(line)["entry"]["id"] for line in files["audit/entries.jsonl"].decode().splitlines()}
    assert ivans.audit_id not in ids and iris.audit_id in ids
    assert failures(wacz.verify(by_iris.data, verifier)) == []
    by_otto = evidence.export_case(searcher, OTTO, CASE)  # an auditor: the record, no faces
    assert by_otto.searches == [] and not any(n.startswith("crops/") for n in members(by_otto.data))
    with pytest.raises(Refused) as refused:
        evidence.export_case(searcher, IVAN, "NO-SUCH-CASE")
    assert refused.value.code == "not_found"


@pytest.fixture(scope="module")
def client(dev_index, searcher):
    with TestClient(create_app(dev_index.settings)) as client:
        yield client


def bearer(dev_index, name):
    return {"Authorization": f"Bearer {dev_index.tokens[name]}"}


def test_the_api_and_the_pages_download_the_package(found, client, dev_index, dev_images, verifier):
    result, *_ = found
    url = f"/api/v1/searches/{result.audit_id}/evidence"
    answer = client.post(url, headers=bearer(dev_index, "ivan"))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/wacz+zip"
    assert "attachment" in answer.headers["content-disposition"]
    assert failures(wacz.verify(answer.content, verifier)) == []
    nothing = client.post("/api/v1/searches/999999/evidence", headers=bearer(dev_index, "iris"))
    assert nothing.status_code == 404 and nothing.json()["code"] == "not_found"
    for name in ("iris", "otto"):  # the very answer of an id of nothing
        refused = client.post(url, headers=bearer(dev_index, name))
        assert refused.status_code == 404
        assert refused.json() == {k: str(v).replace("999999", str(result.audit_id)) for k, v in nothing.json().items()}

    csrf = login(client, "ivan")
    page = client.get(f"/searches/{result.audit_id}")
    assert f'action="{url}"' in page.text
    assert client.post(url).status_code == 403  # a browser session without its CSRF token
    download = client.post(url, data={"csrf_token": csrf})
    assert download.status_code == 200 and failures(wacz.verify(download.content, verifier)) == []
    empty = client.post(url, data={"csrf_token": csrf}, files={"query_photo": ("", b"", "application/octet-stream")})
    assert empty.status_code == 200  # the form's file field left empty: the photo is not added
    assert not any(n.startswith("query/") for n in members(empty.content))
    photo = client.post(url, data={"csrf_token": csrf}, files={"query_photo": ("q.png", query_photo(dev_images))})
    assert photo.status_code == 200 and any(n.startswith("query/") for n in members(photo.content))

    case_id = client.get("/api/v1/cases", headers=bearer(dev_index, "ivan")).json()
    case_id = next(c["id"] for c in case_id if c["case_ref"] == CASE)
    case_page = client.get(f"/cases/{case_id}")
    assert f'action="/api/v1/cases/{case_id}/evidence"' in case_page.text
    by_case = client.post(f"/api/v1/cases/{case_id}/evidence", data={"csrf_token": csrf})
    assert by_case.status_code == 200 and failures(wacz.verify(by_case.content, verifier)) == []
    assert re.search(r'filename="facetrail-case-EV-1-\d{8}T\d{6}Z\.wacz"', by_case.headers["content-disposition"])


def test_the_command_line_exports_a_search_and_a_case(found, dev_index, verifier, tmp_path):
    result, *_ = found
    base = cli_base(dev_index.settings)
    out = tmp_path / "ivan.wacz"
    run = CliRunner().invoke(cli, [*base, *cli_user(dev_index.settings, "ivan"), "evidence", "export",
                                   str(result.audit_id), "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert hashlib.sha256(out.read_bytes()).hexdigest() in run.output.replace("\n", "")
    assert failures(wacz.verify(out, verifier)) == []
    denied = CliRunner().invoke(cli, [*base, *cli_user(dev_index.settings, "iris"), "evidence", "export",
                                      str(result.audit_id), "--out", str(tmp_path / "iris.wacz")])
    assert denied.exit_code == 2 and f"there is no search {result.audit_id}" in denied.output
    assert not (tmp_path / "iris.wacz").exists()
    case = CliRunner().invoke(cli, [*base, *cli_user(dev_index.settings, "sue"), "evidence", "export",
                                    "--case", CASE, "--out", str(tmp_path / "case.wacz")])
    assert case.exit_code == 0, case.output
    verified = CliRunner().invoke(cli, ["evidence", "verify", str(tmp_path / "case.wacz"), "--key", verifier])
    assert verified.exit_code == 0, verified.output


def test_a_crawled_result_brings_its_pages_and_image_as_captured_or_names_what_was_not_kept(
        settings, engine, dev_images, monkeypatch, verifier):
    """A result found on a crawled local site: the image and the pages showing it are in the
    package as the crawler captured them (WARC response records), or each URL without a capture
    is named in the package's notes."""
    from facetrail.store import Database

    db = Database(settings.db_url)
    add_accounts(db)
    open_case(db, CASE, members=("ivan", "iris", "sue"))
    shown, query = [d.path.read_bytes() for d in dev_images if d.identity == PERSON][:2]
    with serve("") as (web,):
        web.routes.update({
            "/robots.txt": Route(b"User-agent: *\nAllow: /\n", content_type="text/plain"),
            "/": Route.html("<title>Front page</title><img src='/img/t.jpg' alt='at the premiere'>"
                            "<a href='/two.html'>two</a>"),
            "/two.html": Route.html("<title>Second page</title><img src='/img/t.jpg' alt='again'>"),
            "/img/t.jpg": Route.image(shown),
        })
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{web.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        base = cli_base(settings)
        added = CliRunner().invoke(cli, [*base, *cli_user(settings, "ada"), "source", "add", "news", "--url",
                                         web.url("/"), "--legal-basis", "press photos, for a test"])
        assert added.exit_code == 0, added.output
        crawled = CliRunner().invoke(cli, [*base, "crawl", "news", "--workers", "1"])
        assert crawled.exit_code == 0, crawled.output
    searcher = Searcher(settings, db, open_index(settings, db), engine)
    result = searcher.search(query, actor=IVAN, purpose="source-verification", justification="where was it shown",
                             case_ref=CASE)
    assert [m.image["location"] for m in result.results] == [web.url("/img/t.jpg")]
    package = evidence.export_search(searcher, IVAN, result.audit_id)
    files = members(package.data)
    records = {r.rec_headers.get_header("WARC-Target-URI"): (r.rec_type, r.content_stream().read()) for r in
               ArchiveIterator(io.BytesIO(files["archive/data.warc.gz"])) if r.rec_type in ("response", "resource")}
    notes = json.loads(files["evidence/manifest.json"])["notes"]
    urls = [web.url("/"), web.url("/two.html"), web.url("/img/t.jpg")]
    for url in urls:  # each one captured, or named as not kept
        assert (url in records) != (f"no capture kept for URL {url}" in " ".join(notes)), (url, notes)
    if importlib.util.find_spec("facetrail.ingest.capture") is not None:
        assert set(urls) <= set(records), notes  # the crawler kept them: all three in the package
        assert records[web.url("/img/t.jpg")] == ("response", shown)  # the very bytes the crawler received
        assert b"Second page" in records[web.url("/two.html")][1]
        pages = [json.loads(line) for line in files["pages/pages.jsonl"].decode().splitlines()[1:]]
        assert {p["url"]: p["title"] for p in pages}[web.url("/")] == "Front page"
        assert any(line.startswith(f"127.0.0.1:{web.port})/img/t.jpg ")
                   for line in files["indexes/index.cdxj"].decode().splitlines())
    assert failures(wacz.verify(package.data, checkpoints.Verifier.of(
        settings, checkpoints.load_key(settings)).text())) == []


def test_a_search_held_for_prior_approval_exports_its_results_once_approved(searcher, dev_images, verifier):
    held = Searcher(searcher.settings.model_copy(update={"approval_policy": {"investigator": "prior"}}),
                    searcher.db, searcher.index, searcher.engine)
    result = held.search(query_photo(dev_images), actor=IVAN, purpose="source-verification",
                         justification="held first", case_ref=CASE)
    assert result.results == [] and result.approval["state"] == "pending"
    before = members(evidence.export_search(held, IVAN, result.audit_id).data)
    assert json.loads(before[f"evidence/search-{result.audit_id}.json"])["result"]["results"] == []
    assert not any(n.startswith("crops/") for n in before)
    held.decide(SUE, result.approval["id"], True, "authorised by the case")
    package = evidence.export_search(held, IVAN, result.audit_id)
    files = members(package.data)
    shown = json.loads(files[f"evidence/search-{result.audit_id}.json"])
    assert shown["result"]["results"] and shown["approval"]["state"] == "approved"
    assert shown["approval"]["decided_by"] == "sue"
    actions = [json.loads(line)["entry"]["action"] for line in files["audit/entries.jsonl"].decode().splitlines()]
    assert "search.approve" in actions
    checks = wacz.verify(package.data, verifier)
    assert failures(checks) == []
    assert any(c.what.startswith(f"file evidence/search-{result.audit_id}.json: its ") for c in checks)


def _data_regions(data: bytes) -> list[tuple[str, int, int]]:
    """(name, start, end) of each member's stored bytes inside the zip file."""
    regions = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            at = info.header_offset
            name_length, extra_length = int.from_bytes(data[at + 26:at + 28], "little"), \
                int.from_bytes(data[at + 28:at + 30], "little")
            start = at + 30 + name_length + extra_length
            regions.append((info.filename, start, start + info.compress_size))
    return regions


def test_a_flipped_bit_inside_any_member_fails_verification_and_never_breaks_the_checker(found, verifier):
    """Bits flipped in place in the package file (the zip as it is on disk, no repacking): inside
    a member's bytes, verification fails naming that member; anywhere at all, it never raises."""
    import random

    _, package, _ = found
    rng = random.Random(18)
    regions = _data_regions(package.data)
    for name, start, end in regions:
        at = rng.randrange(start, end)
        problems = failures(wacz.verify(flip(package.data, at), verifier))
        assert any(name in p for p in problems), (name, problems)
    for at in rng.sample(range(len(package.data)), 40):
        wacz.verify(flip(package.data, at), verifier)  # whatever it finds, it says so: no exception
    junk = wacz.verify(b"PK\x03\x04 not really a zip", verifier)
    assert len(junk) == 1 and not junk[0].ok


def test_the_checkpoint_an_export_signs_reaches_the_witnesses(settings, engine, dev_images, tmp_path):
    """The export's checkpoint (the latest did not cover the search) is delivered to a witness, so
    the package's checkpoint is one the database administrator cannot take back."""
    from facetrail.store import Database

    witness = tmp_path / "witness.txt"
    configured = settings.model_copy(update={"audit_witnesses": [f"file:{witness}"]})
    db = Database(configured.db_url)
    add_accounts(db)
    open_case(db, CASE)
    searcher = Searcher(configured, db, open_index(configured, db), engine)
    result = searcher.search(query_photo(dev_images), actor=IVAN, purpose="source-verification",
                             justification="to the witness", case_ref=CASE)
    out = tmp_path / "w.wacz"
    env = {"FACETRAIL_AUDIT_WITNESSES": json.dumps([f"file:{witness}"])}
    run = CliRunner().invoke(cli, [*cli_base(configured), *cli_user(configured, "ivan"), "evidence", "export",
                                   str(result.audit_id), "--out", str(out)], env=env)
    assert run.exit_code == 0, run.output
    note = members(out.read_bytes())["audit/checkpoint.txt"].decode()
    assert note in witness.read_text()
    mine = checkpoints.Verifier.of(configured, checkpoints.load_key(configured)).text()
    assert failures(wacz.verify(out, mine)) == []


def test_a_watch_hit_exports_with_the_watch_that_authorised_it(settings, engine, dev_images, tmp_path):
    """A watch's hit is a search of its owner's: its package holds the hit, and the watch's request
    and supervisor's approval from the audit log, proven like the rest."""
    import shutil

    from facetrail.governance import watches
    from facetrail.ingest import walk
    from facetrail.store import Database
    from facetrail.store.models import WatchHit

    from .support import folder_ingestor

    db = Database(settings.db_url)
    add_accounts(db)
    open_case(db, CASE)
    searcher = Searcher(settings, db, open_index(settings, db), engine)
    person = [d.path for d in dev_images if d.identity == "bill_gates"]

    def ingest(folder, *paths):
        folder.mkdir()
        for path in paths:
            shutil.copy(path, folder / path.name)
        folder_ingestor(settings, db, searcher.index, folder).run(walk([folder]))

    ingest(tmp_path / "first", person[5])
    vectors, shas = watches.template([p.read_bytes() for p in person[:3]], searcher.faces_in)
    with db.session() as session, session.begin():
        watch_id = watches.request(session, settings, IVAN, CASE, vectors, shas).id
    with db.session() as session, session.begin():
        watches.approve(session, SUE, watch_id)
    ingest(tmp_path / "later", person[3])
    with db.session() as session:
        hit = session.scalars(select(WatchHit)).one()
    package = evidence.export_search(searcher, IVAN, hit.search_id)
    files = members(package.data)
    entries = [json.loads(line)["entry"] for line in files["audit/entries.jsonl"].decode().splitlines()]
    assert {"watch.request", "watch.approve", "search"} <= {e["action"] for e in entries}
    shown = json.loads(files[f"evidence/search-{hit.search_id}.json"])
    assert [r["face_id"] for r in shown["result"]["results"]] == [hit.face_id]
    assert "watch: newly stored faces index" in files["evidence/case-uco.jsonld"].decode()
    mine = checkpoints.Verifier.of(settings, checkpoints.load_key(settings)).text()
    assert failures(wacz.verify(package.data, mine)) == []
    with pytest.raises(Refused):  # another investigator: not theirs to see
        evidence.export_search(searcher, IRIS, hit.search_id)


def test_a_package_whose_checkpoint_a_tsa_timestamped_says_when_independently(settings, engine, dev_images, tsa,
                                                                              tmp_path):
    """With FACETRAIL_AUDIT_TSA_URL, the checkpoint an export signs carries an RFC 3161 timestamp;
    `evidence verify --tsa-root` checks it against the authority's root, offline."""
    from facetrail.store import Database

    url, root, answered = tsa
    stamped = settings.model_copy(update={"audit_tsa_url": url})
    db = Database(stamped.db_url)
    add_accounts(db)
    open_case(db, CASE)
    searcher = Searcher(stamped, db, open_index(stamped, db), engine)
    result = searcher.search(query_photo(dev_images), actor=IVAN, purpose="source-verification",
                             justification="dated by a third party", case_ref=CASE)
    package = evidence.export_search(searcher, IVAN, result.audit_id)
    assert answered  # the authority was asked
    path = tmp_path / "stamped.wacz"
    path.write_bytes(package.data)
    run = CliRunner().invoke(cli, ["evidence", "verify", str(path), "--tsa-root", str(root)])
    assert run.exit_code == 0, run.output
    assert "audit/checkpoint.txt: timestamped by the time-stamping authority at" in run.output
    plain = CliRunner().invoke(cli, ["evidence", "verify", str(path)])
    assert plain.exit_code == 0 and "carries an RFC 3161 timestamp" in plain.output
