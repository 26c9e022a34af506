"""Subject access reports: a recorded search under the search rules. Admins ask, with a request
reference from their register, the date it was received and how the person's identity was
checked; the purpose `data-subject-access` is reserved for them; the admins' rate limit applies;
one report per request; nothing is searched until a second admin approves; the report is for
the admin who asked, and each one made is recorded with its result count."""

from __future__ import annotations

import json
import re
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.cli import app as cli
from facetrail.governance.accounts import create_token, create_user
from facetrail.governance.actors import Actor
from facetrail.index import open_index
from facetrail.ingest import walk
from facetrail.store import Approval, AuditEntry, Database, User
from facetrail.web import create_app

from .support import (
    SEARCH_FORM,
    add_accounts,
    cli_base,
    folder_ingestor,
    postgres_database,
    settings_for,
    upload,
)

YESTERDAY = (date.today() - timedelta(days=1)).isoformat()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def small(request, tmp_path_factory, dev_images):
    """A small index of its own (three people, four photos each) on each database, with the usual
    accounts and a second admin, adam: (settings, db, tokens)."""
    folder = tmp_path_factory.mktemp("photos")
    for identity in ("lindsay_lohan", "tom_hanks", "madonna"):
        for d in [d for d in dev_images if d.identity == identity][:4]:
            shutil.copy(d.path, folder / f"{identity}-{d.path.name}")
    databases = postgres_database() if request.param == "postgresql" else None
    url = next(databases) if databases else None
    settings = settings_for(tmp_path_factory.mktemp("data"), database_url=url)
    db = Database(settings.db_url)
    folder_ingestor(settings, db, open_index(settings, db), folder).run(walk([folder]))
    tokens = add_accounts(db)
    with db.session() as session, session.begin():
        ada = Actor.of(session.scalar(select(User).where(User.username == "ada")), "cli")
        create_user(session, ada, "adam", "admin")
        tokens["adam"] = create_token(session, ada, "adam", "tests")[1]
    yield settings, db, tokens
    db.engine.dispose()
    if databases:
        databases.close()


def facetrail(small, user, *args):
    settings, _, tokens = small
    return CliRunner().invoke(cli, [*cli_base(settings), "--token", tokens[user], "subject-report", *args])


def photo(dev_images, identity="lindsay_lohan", n=5):
    return str([d for d in dev_images if d.identity == identity][n].path)  # not one of the indexed four


def ask(small, dev_images, ref, user="ada", identity="lindsay_lohan"):
    return facetrail(small, user, photo(dev_images, identity), "--request-ref", ref, "--received", YESTERDAY,
                     "--identity-check", "id-document")


def numbers(output):
    """(search id, approval id) from the answer to a request."""
    return int(re.search(r"search (\d+)", output).group(1)), int(re.search(r"approval (\d+)", output).group(1))


def test_a_report_needs_a_second_admin_and_is_for_the_admin_who_asked(small, dev_images, tmp_path):
    settings, db, tokens = small
    asked = ask(small, dev_images, "DSR-2026-0001")
    assert asked.exit_code == 0, asked.output
    search_id, approval_id = numbers(asked.output)
    with db.session() as session:
        entry = session.get(AuditEntry, search_id)
        held = session.scalar(select(Approval).where(Approval.search_id == search_id))
    assert (entry.action, entry.purpose, entry.actor) == ("search", "data-subject-access", "ada")
    assert entry.details["request_ref"] == "DSR-2026-0001" and entry.details["received"] == YESTERDAY
    assert entry.details["identity_check"] == "id-document" and entry.details["results"] == []
    assert held.policy == "subject-access" and held.state == "pending" and held.held_embedding is not None

    early = facetrail(small, "ada", "--search", str(search_id))  # nothing searched yet
    assert early.exit_code == 2 and "second admin" in early.output
    own = facetrail(small, "ada", "--approve", str(approval_id), "--reason", "checked")
    assert own.exit_code == 2 and "own search" in own.output
    pending = facetrail(small, "adam", "--pending")
    assert "DSR-2026-0001" in pending.stdout
    with TestClient(create_app(settings)) as client:  # not a supervisor's decision, nor in their queue
        sue = {"Authorization": f"Bearer {tokens['sue']}"}
        assert approval_id not in [q["id"] for q in client.get("/api/v1/approvals", headers=sue).json()]
        by_sue = client.post(f"/api/v1/approvals/{approval_id}", json={"decision": "approve", "reason": "x"},
                             headers=sue)
        assert by_sue.status_code == 404
        assert client.get(f"/api/v1/searches/{search_id}", headers=sue).status_code == 404
    no_reason = facetrail(small, "adam", "--approve", str(approval_id))
    assert no_reason.exit_code == 2 and "reason" in no_reason.output
    approved = facetrail(small, "adam", "--approve", str(approval_id), "--reason", "identity and request checked")
    assert approved.exit_code == 0 and "approved by adam" in approved.stdout, approved.output

    seen_by_adam = facetrail(small, "adam", "--search", str(search_id))  # approving is not seeing
    assert seen_by_adam.exit_code == 2 and "no search" in seen_by_adam.output
    out = tmp_path / "report.json"
    made = facetrail(small, "ada", "--search", str(search_id), "--out", str(out))
    assert made.exit_code == 0, made.output
    report = json.loads(out.read_text())
    assert (report["request_ref"], report["made_by"], report["approved_by"]) == ("DSR-2026-0001", "ada", "adam")
    found = len(report["images"])
    assert found >= 1 and all("lindsay_lohan" in i["locations"][0] for i in report["images"])
    distances = [i["distance"] for i in report["images"]]
    assert distances == sorted(distances) and max(distances) <= 0.6
    assert {"sha256", "locations", "first_seen", "last_seen", "face_box"} <= set(report["images"][0])
    with db.session() as session:
        recorded = session.get(AuditEntry, report["audit_id"])
        decision = session.scalars(select(AuditEntry).where(AuditEntry.action == "search.approve")
                                   .order_by(AuditEntry.id.desc())).first()
    assert recorded.action == "subject_report" and recorded.details["request_ref"] == "DSR-2026-0001"
    assert recorded.details["result_count"] == found and recorded.details["search_id"] == search_id
    assert decision.actor == "adam" and decision.details["result_count"] == found

    again = ask(small, dev_images, "DSR-2026-0001")  # one report per request
    assert again.exit_code == 2 and "already" in again.output


def test_requests_that_break_the_rules_are_refused_and_not_recorded(small, dev_images):
    _, db, _ = small
    with db.session() as session:
        before = session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))
    investigator = ask(small, dev_images, "DSR-2026-0100", user="ivan")
    assert investigator.exit_code == 2 and "may not" in investigator.output
    base = [photo(dev_images), "--received", YESTERDAY, "--identity-check", "id-document"]
    for ref in ("", "   ", "please send me everything you hold on me", "DSR", "no-digits-here",
                "DSR-1; DROP TABLE", "x" * 41 + "1"):
        refused = facetrail(small, "ada", *base, "--request-ref", ref)
        assert refused.exit_code == 2 and "register of requests" in refused.output, ref
    ref = ["--request-ref", "DSR-2026-0101"]
    no_date = facetrail(small, "ada", photo(dev_images), *ref, "--identity-check", "id-document")
    assert no_date.exit_code == 2 and "received" in no_date.output
    future = (date.today() + timedelta(days=2)).isoformat()
    later = facetrail(small, "ada", photo(dev_images), *ref, "--received", future, "--identity-check", "in-person")
    assert later.exit_code == 2 and "future" in later.output
    unchecked = facetrail(small, "ada", photo(dev_images), *ref, "--received", YESTERDAY, "--identity-check", "trust me")
    assert unchecked.exit_code == 2 and "identity" in unchecked.output
    faceless = next(d.path for d in dev_images if d.identity == "none")
    no_face = facetrail(small, "ada", str(faceless), *ref, "--received", YESTERDAY, "--identity-check", "in-person")
    assert no_face.exit_code == 2 and "no face" in no_face.output
    with db.session() as session:
        assert session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1)) == before


def test_the_purpose_is_reserved_for_subject_access(small, dev_images):
    settings, _, tokens = small
    listed = settings.model_copy(update={"purposes": [*settings.purposes, "data-subject-access"]})
    with TestClient(create_app(listed)) as client:  # even when configured as a purpose
        data = Path(photo(dev_images)).read_bytes()
        for user in ("ivan", "sue"):
            refused = client.post("/api/v1/search", files=upload(data),
                                  data={**SEARCH_FORM, "purpose": "data-subject-access"},
                                  headers={"Authorization": f"Bearer {tokens[user]}"})
            assert refused.status_code == 422 and refused.json()["code"] == "purpose_reserved"
    cli_search = CliRunner().invoke(cli, [*cli_base(settings), "--token", tokens["ivan"], "search", photo(dev_images),
                                          "--purpose", "data-subject-access", "--justification", "j", "--case", "C-1"])
    assert cli_search.exit_code == 2 and "reserved" in cli_search.output


def test_admins_are_rate_limited_and_a_denied_request_shows_nothing(small, dev_images):
    _, db, _ = small
    asked = ask(small, dev_images, "DSR-2026-0200", identity="tom_hanks")
    search_id, approval_id = numbers(asked.output)
    denied = facetrail(small, "adam", "--deny", str(approval_id), "--reason", "identity not proven")
    assert denied.exit_code == 0 and "denied" in denied.stdout
    shown = facetrail(small, "ada", "--search", str(search_id))
    assert shown.exit_code == 2 and "denied" in shown.output
    with db.session() as session:
        assert session.get(Approval, approval_id).held_embedding is None  # deleted at the decision
    retried = ask(small, dev_images, "DSR-2026-0200", identity="tom_hanks")  # a denied one may be asked again
    assert retried.exit_code == 0, retried.output

    # the default admins' limit is 5 an hour; this database has 3 requests of ada's so far
    with db.session() as session:
        made = session.scalars(select(AuditEntry).where(AuditEntry.actor == "ada", AuditEntry.action == "search")).all()
    for n in range(5 - len(made)):
        assert ask(small, dev_images, f"DSR-2026-03{n:02d}", identity="madonna").exit_code == 0
    limited = ask(small, dev_images, "DSR-2026-0399", identity="madonna")
    assert limited.exit_code == 2 and "limit" in limited.output and "min)" in limited.output
    other_admin = ask(small, dev_images, "DSR-2026-0400", user="adam", identity="madonna")  # per admin
    assert other_admin.exit_code == 0, other_admin.output
