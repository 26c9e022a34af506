"""The EU AI Act Art. 12(3) record of each search: the period of the use, the reference database
(index kind, generation, face count, model and a snapshot id), the input (the query's sha256),
the results (ids and distances) and who verified a match (`match.confirm` entries naming the
search); and Art. 26(6): audit entries are kept at least six months, shorter settings refused
wherever they come from."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.governance.actors import Actor
from facetrail.index import open_index
from facetrail.search import Searcher
from facetrail.search.service import confirm_match
from facetrail.store import AuditEntry

from .support import investigator, open_case, photo_of

REQUEST = {"purpose": "trust-and-safety", "justification": "art 12 test", "case_ref": "ART-12"}


def test_a_search_entry_holds_the_period_the_gallery_the_input_and_its_verifiers(dev_index, dev_images, engine):
    searcher = Searcher(dev_index.settings, dev_index.db, open_index(dev_index.settings, dev_index.db), engine)
    photo = photo_of(dev_images, "keanu_reeves").read_bytes()
    open_case(dev_index.db, REQUEST["case_ref"], purpose=REQUEST["purpose"])
    first = searcher.search(photo, actor=investigator(), **REQUEST)
    iris = Actor("iris", "investigator", "test")
    second = searcher.search(photo, actor=iris, **REQUEST)  # another investigator, the same case
    with dev_index.db.session() as session:
        entry, again = (session.get(AuditEntry, r.audit_id) for r in (first, second))
    use = entry.details["use"]
    started, ended = datetime.fromisoformat(use["started"]), datetime.fromisoformat(use["ended"])
    assert started < ended <= entry.created_at and use["seconds"] > 0  # decoding and searching took time
    gallery = entry.details["index"]
    assert gallery["size"] == len(searcher.index) > 0 and gallery["kind"] and "version" in gallery
    assert gallery["model"] == engine.model_name and gallery["newest_face"] > 0
    assert gallery["snapshot"] == again.details["index"]["snapshot"]  # the same gallery, the same id
    unhashed = {k: v for k, v in gallery.items() if k != "snapshot"}
    assert gallery["snapshot"] == hashlib.sha256(json.dumps(unhashed, sort_keys=True).encode()).hexdigest()
    assert entry.details["query_sha256"] == hashlib.sha256(photo).hexdigest()
    assert entry.details["results"] == [[m.face_id, round(m.distance, 6)] for m in first.results]

    face = first.results[0].face_id  # two people confirm it: verified, each confirmation recorded
    confirm_match(dev_index.db, investigator(), first.audit_id, face)
    confirm_match(dev_index.db, iris, second.audit_id, face)
    with dev_index.db.session() as session:
        confirms = [e.details for e in session.scalars(select(AuditEntry).where(
            AuditEntry.action == "match.confirm", AuditEntry.id > again.id).order_by(AuditEntry.id))]
    assert [(c["search_id"], c["face_id"], c["state"]) for c in confirms] == [
        (first.audit_id, face, "confirmed"), (second.audit_id, face, "verified")]
    assert confirms[-1]["confirmed_by"] == ["ivan", "iris"]


def test_audit_retention_under_six_months_is_refused_from_the_environment_and_the_file(tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.setenv("FACETRAIL_AUDIT_RETENTION_DAYS", "90")
    refused = runner.invoke(app, ["--data-dir", str(tmp_path / "a"), "audit", "key", "--create"])
    assert refused.exit_code == 2 and "183 days" in refused.output
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())  # nothing ran
    monkeypatch.delenv("FACETRAIL_AUDIT_RETENTION_DAYS")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "facetrail.toml").write_text("audit_retention_days = 182\n")
    assert runner.invoke(app, ["--data-dir", str(tmp_path / "b"), "audit", "key", "--create"]).exit_code == 2
    (tmp_path / "b" / "facetrail.toml").write_text("audit_retention_days = 183\n")
    assert runner.invoke(app, ["--data-dir", str(tmp_path / "b"), "audit", "key", "--create"]).exit_code == 0
