"""The command line as a user runs it: index, search (--json, several photos), reindex, audit."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.store import AuditEntry

from facetrail.config import Settings

from .support import SEARCH_ARGS, as_user, cli_base, photo_of

runner = CliRunner()


def run(settings, *args, user="ivan"):
    """`facetrail` with these settings (a Settings, or a data folder for a fresh SQLite one)."""
    base = cli_base(settings) if isinstance(settings, Settings) else ["--data-dir", str(settings)]
    return runner.invoke(app, [*base, *as_user(settings, user), *args], catch_exceptions=False)


def audit_count(db, settings_changes=False):
    """Audit entries, without settings changes unless asked (the first command on a database records them)."""
    query = select(func.count()).select_from(AuditEntry)
    if not settings_changes:
        query = query.where(AuditEntry.action != "settings.change")
    with db.session() as session:
        return session.scalar(query)


@pytest.fixture(scope="module")
def data_dir(dev_index):
    return dev_index.settings


def test_search_json_reports_faces_and_ranked_results(data_dir, dev_images, dev_index):
    photo = photo_of(dev_images, "will_smith")
    before = audit_count(dev_index.db)
    result = run(data_dir, "search", str(photo), *SEARCH_ARGS, "--json", "--top-k", "5")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["query"]["selected"] == 0
    assert data["query"]["faces"][0]["index"] == 0 and len(data["query"]["faces"][0]["box"]) == 4
    results = data["results"]
    assert 1 <= len(results) <= 5
    assert results[0]["image"]["location"] == str(photo)  # the photo itself is indexed
    assert results[0]["distance"] == pytest.approx(0, abs=1e-5)
    assert [r["distance"] for r in results] == sorted(r["distance"] for r in results)
    for r in results:
        assert set(r) >= {"distance", "similarity", "box", "image"}
        assert len(r["image"]["sha256"]) == 64
        assert 0 <= r["similarity"] <= 1
    assert sum("will_smith" in r["image"]["location"] for r in results) >= 3
    assert audit_count(dev_index.db) == before + 1
    with dev_index.db.session() as session:
        entry = session.get(AuditEntry, data["audit_id"])
    assert entry.details["index"]["size"] == dev_index.summary.faces and entry.details["index"]["version"]


def test_several_photos_give_json_lines_in_order_and_faceless_photos_an_error(data_dir, dev_images):
    photos = [
        photo_of(dev_images, "tom_hanks"),
        next(d.path for d in dev_images if d.identity == "none"),
        photo_of(dev_images, "madonna"),
    ]
    result = run(data_dir, "search", *map(str, photos), *SEARCH_ARGS, "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["query"]["name"] for line in lines] == list(map(str, photos))
    assert lines[1]["query"]["faces"] == [] and lines[1]["results"] == []
    assert "no face" in lines[1]["error"]
    assert "error" not in lines[0] and "error" not in lines[2]


@pytest.mark.parametrize(
    ("args", "user", "message"),
    [
        (["--justification", "j", "--case", "c"], "ivan", "purpose"),
        (["--purpose", "curiosity", "--justification", "j", "--case", "c"], "ivan", "purpose"),
        (["--purpose", "source-verification", "--case", "c"], "ivan", "justification"),
        (["--purpose", "source-verification", "--justification", "  ", "--case", "c"], "ivan", "justification"),
        (["--purpose", "source-verification", "--justification", "j"], "ivan", "case reference"),
        (SEARCH_ARGS, None, "who is acting"),
        (SEARCH_ARGS, "nobody", "needs proof"),  # a name alone proves nothing, and says nothing of who exists
        (SEARCH_ARGS, "otto", "auditor role may not"),
        (SEARCH_ARGS, "ada", "admin role may not"),
    ],
)
def test_search_is_refused_without_user_purpose_justification_or_case(data_dir, dev_images, dev_index, args, user,
                                                                       message):
    before = audit_count(dev_index.db)
    result = run(data_dir, "search", str(photo_of(dev_images, "madonna")), *args, user=user)
    assert result.exit_code == 2
    assert message in result.output
    assert audit_count(dev_index.db) == before


def test_search_with_a_token_is_recorded_as_its_user(data_dir, dev_images, dev_index, monkeypatch):
    monkeypatch.setenv("FACETRAIL_TOKEN", dev_index.tokens["iris"])
    result = run(data_dir, "search", str(photo_of(dev_images, "madonna")), *SEARCH_ARGS, "--json", user=None)
    assert result.exit_code == 0, result.output
    audit_id = json.loads(result.stdout)["audit_id"]
    with dev_index.db.session() as session:
        entry = session.get(AuditEntry, audit_id)
    assert (entry.actor, entry.actor_kind, entry.details["via"]) == ("iris", "user:investigator", "cli")


def test_face_option_picks_another_face(data_dir, dev_images, tmp_path):
    from PIL import Image

    left = Image.open(photo_of(dev_images, "anthony_hopkins")).convert("RGB")
    right = Image.open(photo_of(dev_images, "bill_gates")).convert("RGB").resize(left.size)
    both = Image.new("RGB", (left.width * 2, left.height), "white")
    both.paste(left, (0, 0))
    both.paste(right, (left.width, 0))
    pair = tmp_path / "pair.jpg"
    both.save(pair, quality=95)

    found = json.loads(run(data_dir, "search", str(pair), *SEARCH_ARGS, "--json").stdout)
    assert len(found["query"]["faces"]) == 2
    boxes = [f["box"] for f in found["query"]["faces"]]
    right_face = next(i for i, box in enumerate(boxes) if box[0] >= left.width)
    picked = json.loads(
        run(data_dir, "search", str(pair), *SEARCH_ARGS, "--json", "--face", str(right_face)).stdout
    )
    assert picked["query"]["selected"] == right_face
    assert "bill_gates" in picked["results"][0]["image"]["location"]

    missing = json.loads(run(data_dir, "search", str(pair), *SEARCH_ARGS, "--json", "--face", "7").stdout)
    assert "does not exist" in missing["error"] and missing["results"] == []


def test_text_output_lists_faces_and_matches(data_dir, dev_images):
    result = run(data_dir, "search", str(photo_of(dev_images, "madonna")), *SEARCH_ARGS)
    assert result.exit_code == 0
    assert "face 0" in result.stdout and "madonna" in result.stdout


def test_reindex_rebuilds_the_same_results(data_dir, dev_images):
    photo = str(photo_of(dev_images, "keanu_reeves"))
    before = json.loads(run(data_dir, "search", photo, *SEARCH_ARGS, "--json").stdout)["results"]
    result = run(data_dir, "reindex")
    assert result.exit_code == 0 and "rebuilt" in result.stdout
    after = json.loads(run(data_dir, "search", photo, *SEARCH_ARGS, "--json").stdout)["results"]
    assert [(r["face_id"], r["distance"]) for r in after] == [(r["face_id"], r["distance"]) for r in before]


def test_audit_verify_reports_ok(data_dir):
    result = run(data_dir, "audit", "verify", user="otto")
    assert result.exit_code == 0 and result.stdout.startswith("OK")


def test_audit_export_writes_the_chain_as_json_lines(data_dir, dev_index, dev_images):
    from facetrail.governance.audit import GENESIS

    for identity in ("madonna", "tom_hanks"):
        run(data_dir, "search", str(photo_of(dev_images, identity)), *SEARCH_ARGS)

    assert run(data_dir, "audit", "export").exit_code == 2  # investigators do not read the log
    lines = [json.loads(line) for line in run(data_dir, "audit", "export", user="otto").stdout.splitlines()]
    assert len(lines) == audit_count(dev_index.db, settings_changes=True) > 0
    assert lines[0]["prev_hash"] == GENESIS
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(lines, lines[1:]))
    assert {"created_at", "actor", "action", "purpose", "details", "hash"} <= set(lines[-1])
    assert lines[-1]["action"] == "audit.export" and lines[-1]["actor"] == "otto"  # the export is recorded
    later = run(data_dir, "audit", "export", "--since", "2999-01-01", user="otto").stdout
    assert later == ""


def test_index_reports_a_summary_and_missing_paths(tmp_path, dev_images):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(photo_of(dev_images, "madonna").read_bytes())
    (folder / "notes.jpg").write_text("not a photo")
    refused = run(tmp_path / "data", "index", str(folder), user=None)
    assert refused.exit_code == 2 and "not in a declared folder source" in refused.output
    result = run(tmp_path / "data", "index", str(folder), "--workers", "1", "--legal-basis",
                 "our own press photos", user=None)
    assert result.exit_code == 0, result.output
    assert "1 new images" in result.stdout and "1 not_an_image" in result.stdout
    assert "images/s" in result.stdout
    again = run(tmp_path / "data", "index", str(folder), user=None)  # the source is known now
    assert again.exit_code == 0 and "2 unchanged" in again.stdout
    assert run(tmp_path / "data", "index", str(tmp_path / "nowhere"), user=None).exit_code == 2
