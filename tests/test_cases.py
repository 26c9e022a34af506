"""Cases as records (issue 17, part 1): supervisors open, amend and close them, on the record;
a case is usable for a search only while open, in date, authorised (or inside the 48-hour urgent
window) and by its members; investigators cannot open cases or see other people's; earlier
free-text references become incomplete cases on migration. Tried from the CLI and the service,
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.governance import audit, cases
from facetrail.governance.actors import Actor
from facetrail.store import AuditEntry, Database
from facetrail.store.db import alembic_config
from facetrail.store.models import Case

from .support import add_accounts, cli_base

runner = CliRunner()
PURPOSES = ["source-verification", "authorised-investigation"]
SUE = Actor("sue", "supervisor", "test")
IVAN = Actor("ivan", "investigator", "test")
IRIS = Actor("iris", "investigator", "test")
NEXT_MONTH = date.today() + timedelta(days=30)
COURT = cases.Authorisation("District court", "AZ 12/26", date.today() - timedelta(days=1))


@pytest.fixture
def db(settings):
    database = Database(settings.db_url)
    add_accounts(database, case=None)
    return database


def open_one(db, ref="C-1", members=("ivan",), authorisation=COURT, expires_on=NEXT_MONTH):
    with db.session() as session, session.begin():
        cases.open_case(session, SUE, ref=ref, title="Fraud ring", purpose="authorised-investigation",
                        purposes=PURPOSES, authorisation=authorisation, expires_on=expires_on,
                        members=list(members))


def usable(db, actor, ref="C-1"):
    with db.session() as session:
        return cases.for_search(session, actor, ref).ref


def actions(db) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("case.%"))
                                    .order_by(AuditEntry.id)))


def test_a_member_may_search_under_an_open_authorised_case_and_every_change_is_recorded(db):
    open_one(db)
    assert usable(db, IVAN) == "C-1"
    with db.session() as session, session.begin():
        cases.add_member(session, SUE, "C-1", "iris")
        cases.remove_member(session, SUE, "C-1", "ivan")
    assert usable(db, IRIS) == "C-1"
    with pytest.raises(cases.CaseNotFound):
        usable(db, IVAN)
    assert actions(db) == ["case.open", "case.add_member", "case.add_member", "case.remove_member"]
    with db.session() as session:
        opened = session.scalar(select(AuditEntry).where(AuditEntry.action == "case.open"))
        assert opened.actor == "sue" and opened.purpose == "authorised-investigation"
        assert opened.details["authorisation_ref"] == "AZ 12/26" and opened.details["authority"] == "District court"
        assert audit.verify(session)[1] is None


def test_a_case_refuses_searches_once_closed_or_expired(db):
    open_one(db)
    with db.session() as session, session.begin():
        cases.close(session, SUE, "C-1", "suspect identified")
    with pytest.raises(cases.CaseRefused, match="closed"):
        usable(db, IVAN)
    open_one(db, "C-2")
    with db.session() as session, session.begin():  # a year passes (the row is edited, as time would)
        session.execute(update(Case).where(Case.ref == "C-2").values(expires_on=date.today() - timedelta(days=1)))
    with pytest.raises(cases.CaseRefused, match="expired"):
        usable(db, IVAN, "C-2")
    with db.session() as session, session.begin():  # a supervisor renews it, on the record
        cases.amend(session, SUE, "C-2", expires_on=NEXT_MONTH)
    assert usable(db, IVAN, "C-2") == "C-2"


def test_the_urgent_path_stops_the_case_after_48_hours_without_an_authorisation(db):
    open_one(db, authorisation=cases.Authorisation("Police duty officer", urgent=True))
    assert usable(db, IVAN) == "C-1"  # inside the window
    with db.session() as session, session.begin():
        case = session.scalar(select(Case).where(Case.ref == "C-1"))
        assert timedelta(hours=47) < case.urgent_due - datetime.now(UTC) <= timedelta(hours=48)
        case.urgent_due = datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(cases.CaseRefused, match="48 hours"):
        usable(db, IVAN)
    with db.session() as session, session.begin():  # re-stating urgency does not buy another 48 hours
        cases.amend(session, SUE, "C-1", authorisation=cases.Authorisation("Police duty officer", urgent=True))
    with pytest.raises(cases.CaseRefused, match="48 hours"):
        usable(db, IVAN)
    with db.session() as session, session.begin():
        cases.amend(session, SUE, "C-1", authorisation=COURT)
    assert usable(db, IVAN) == "C-1"


@pytest.mark.parametrize("authorisation, expires_on, message", [
    (cases.Authorisation(""), NEXT_MONTH, "authority"),
    (cases.Authorisation("Court"), NEXT_MONTH, "reference and date"),
    (cases.Authorisation("Court", "AZ 1", date.today() + timedelta(days=3)), NEXT_MONTH, "future"),
    (cases.Authorisation("Court", "AZ 1", date.today(), urgent=True), NEXT_MONTH, "urgent"),
    (COURT, date.today(), "after today"),
    (COURT, date.today() + timedelta(days=400), "at most"),
])
def test_a_case_needs_its_authorisation_and_a_bounded_expiry(db, authorisation, expires_on, message):
    with pytest.raises(cases.CaseRefused, match=message):
        open_one(db, authorisation=authorisation, expires_on=expires_on)
    assert actions(db) == []


def test_investigators_cannot_open_cases_nor_learn_other_cases_by_their_reference(db):
    with pytest.raises(cases.CaseRefused, match="supervisors"):
        with db.session() as session, session.begin():
            cases.open_case(session, IVAN, ref="MINE", title="x", purpose="authorised-investigation",
                            purposes=PURPOSES, authorisation=COURT, expires_on=NEXT_MONTH)
    open_one(db, members=())
    for ref in ("C-1", "NO-SUCH-CASE"):  # someone else's case answers like one that does not exist
        with pytest.raises(cases.CaseNotFound) as refused:
            usable(db, IVAN, ref)
        assert ref in str(refused.value) and "member" in str(refused.value)
        with db.session() as session, pytest.raises(cases.CaseNotFound):
            cases.show(session, IVAN, ref)
    with db.session() as session:
        assert cases.listing(session, IVAN) == []
        assert [c["case_ref"] for c in cases.listing(session, Actor("otto", "auditor", "test"))] == ["C-1"]


def test_only_searchers_become_members_and_references_are_plain(db):
    open_one(db, members=())
    with db.session() as session, pytest.raises(cases.CaseRefused, match="cannot search"):
        cases.add_member(session, SUE, "C-1", "otto")
    for ref in ("", "two words", "[bold]x[/]", "\x1b[2Jx", "x" * 101):
        with pytest.raises(cases.CaseRefused, match="reference"):
            open_one(db, ref=ref)
    for text in ("nul\x00byte", "new\nline", "bidi\u202eoverride", "x" * 201):
        with db.session() as session, pytest.raises(cases.CaseRefused, match="plain text"):
            cases.open_case(session, SUE, ref="C-9", title=text, purpose="authorised-investigation",
                            purposes=PURPOSES, authorisation=COURT, expires_on=NEXT_MONTH)
    with db.session() as session, pytest.raises(cases.CaseNotFound):
        cases.for_search(session, IVAN, "nul\x00ref")  # no query the database would fail on


def cli(settings, tokens, who, *args):
    return runner.invoke(app, [*cli_base(settings), "--token", tokens[who], "case", *args])


def test_the_command_line_opens_lists_shows_and_closes_cases(settings):
    tokens = add_accounts(Database(settings.db_url), case=None)
    opened = cli(settings, tokens, "sue", "open", "NEWS-7", "--title", "Leaked photos",
                 "--purpose", "source-verification", "--authority", "Editor-in-chief", "--urgent",
                 "--expires", NEXT_MONTH.isoformat(), "--member", "ivan")
    assert opened.exit_code == 0, opened.output
    assert "NEWS-7" in opened.output and "Authorisation due by" in opened.output
    refused = cli(settings, tokens, "ivan", "open", "NEWS-8", "--title", "x", "--purpose", "source-verification",
                  "--authority", "me", "--urgent", "--expires", NEXT_MONTH.isoformat())
    assert refused.exit_code == 2 and "refused" in refused.output
    listed = cli(settings, tokens, "ivan", "list")
    assert listed.exit_code == 0 and "NEWS-7" in listed.output and "ivan" in listed.output
    shown = cli(settings, tokens, "otto", "show", "NEWS-7")
    assert shown.exit_code == 0 and "Editor-in-chief" in shown.output
    amended = cli(settings, tokens, "sue", "amend", "NEWS-7", "--authority", "Editor-in-chief",
                  "--authorisation-ref", "MEMO-3", "--authorised-on", date.today().isoformat())
    assert amended.exit_code == 0, amended.output
    closed = cli(settings, tokens, "sue", "close", "NEWS-7", "--reason", "story published")
    assert closed.exit_code == 0, closed.output
    assert "closed" in cli(settings, tokens, "sue", "list", "--status", "closed").output
    assert "NEWS-7" not in cli(settings, tokens, "sue", "list", "--status", "open").output


def test_earlier_free_text_references_become_incomplete_cases_on_migration(settings):
    """Searches recorded before cases existed: their references become cases a supervisor must
    complete (with the authorisation and an expiry) before anyone searches under them again."""
    db = Database(settings.db_url)
    add_accounts(db)
    with db.session() as session, session.begin():
        for actor, ref in ((IVAN, "OLD-1"), (IRIS, "OLD-1"), (IVAN, "OLD-2")):
            audit.record(session, actor, "search", "source-verification", case_ref=ref, results=[])
    from alembic import command

    command.downgrade(alembic_config(db.engine), "0016")  # as before cases existed
    command.upgrade(alembic_config(db.engine), "head")
    with db.session() as session:
        old = {c["case_ref"]: c for c in cases.listing(session, SUE)}
    assert set(old) == {"OLD-1", "OLD-2"} and {c["state"] for c in old.values()} == {"incomplete"}
    assert old["OLD-1"]["members"] == ["iris", "ivan"] and old["OLD-1"]["purpose"] == "source-verification"
    with pytest.raises(cases.CaseRefused, match="completed by a supervisor"):
        usable(db, IVAN, "OLD-1")
    with db.session() as session, session.begin(), pytest.raises(cases.CaseRefused, match="complete it"):
        cases.amend(session, SUE, "OLD-1", title="Old fraud case")
    with db.session() as session, session.begin():
        cases.amend(session, SUE, "OLD-1", authorisation=COURT, expires_on=NEXT_MONTH)
    assert usable(db, IVAN, "OLD-1") == "OLD-1"


# --- the API and the pages ----------------------------------------------------------------------


@pytest.fixture
def web(settings):
    from fastapi.testclient import TestClient

    from facetrail.web import create_app

    tokens = add_accounts(Database(settings.db_url), case=None)
    with TestClient(create_app(settings), follow_redirects=False) as client:
        yield client, tokens


def bearer(tokens, who):
    return {"Authorization": f"Bearer {tokens[who]}"}


CASE = {"ref": "WEB-1", "title": "Harassment campaign", "purpose": "authorised-investigation",
        "authority": "Data-protection officer", "authorisation_ref": "DPO-9",
        "authorised_on": date.today().isoformat(), "expires_on": NEXT_MONTH.isoformat(), "members": ["ivan"]}


def test_the_api_opens_shows_and_closes_cases_for_supervisors_only(web):
    client, tokens = web
    refused = client.post("/api/v1/cases", json=CASE, headers=bearer(tokens, "ivan"))
    assert refused.status_code == 403 and refused.json()["code"] == "not_permitted"
    opened = client.post("/api/v1/cases", json=CASE, headers=bearer(tokens, "sue"))
    assert opened.status_code == 200, opened.text
    case_id = opened.json()["id"]
    again = client.post("/api/v1/cases", json=CASE, headers=bearer(tokens, "sue"))
    assert again.status_code == 422 and again.json()["code"] == "case_refused" and "exists" in again.json()["detail"]
    member = client.post(f"/api/v1/cases/{case_id}/members", json={"username": "iris"}, headers=bearer(tokens, "sue"))
    assert member.json()["members"] == ["iris", "ivan"]
    shown = client.get(f"/api/v1/cases/{case_id}", headers=bearer(tokens, "ivan")).json()
    assert shown["case"]["authorisation_ref"] == "DPO-9"
    assert [line["summary"] for line in shown["lines"]] == ["open", "add member", "add member"]
    assert all(isinstance(line["entry_id"], int) for line in shown["lines"])
    closed = client.post(f"/api/v1/cases/{case_id}/close", json={"reason": "done"}, headers=bearer(tokens, "sue"))
    assert closed.json()["state"] == "closed"
    assert [c["case_ref"] for c in client.get("/api/v1/cases", headers=bearer(tokens, "otto")).json()] == ["WEB-1"]


def test_a_case_id_is_not_a_way_into_other_peoples_cases(web):
    """An investigator who is not a member gets the same 404 for the case as for an id that
    does not exist, and a huge id is a 404 too (no 500)."""
    client, tokens = web
    case_id = client.post("/api/v1/cases", json={**CASE, "members": []}, headers=bearer(tokens, "sue")).json()["id"]
    for probe in (case_id, case_id + 1000, 99999999999999999999):
        answer = client.get(f"/api/v1/cases/{probe}", headers=bearer(tokens, "ivan"))
        assert answer.status_code == 404 and answer.json()["code"] == "not_found", probe
    assert client.get("/api/v1/cases", headers=bearer(tokens, "ivan")).json() == []
    assert client.get(f"/api/v1/cases/{case_id}").status_code == 401


def test_the_case_pages_list_open_and_show_a_case_with_links_to_its_audit_entries(web):
    import re

    from .support import login

    client, _ = web
    csrf = login(client, "sue")
    assert "Open a case" in client.get("/cases").text
    form = {k: v for k, v in CASE.items() if k != "members"}
    no_csrf = client.post("/cases", data=form)
    assert no_csrf.status_code == 403
    opened = client.post("/cases", data={**form, "csrf_token": csrf})
    assert opened.status_code == 303, opened.text
    page = client.get(opened.headers["location"])
    assert page.status_code == 200 and "Harassment campaign" in page.text and "DPO-9" in page.text
    entry = re.search(r'href="/audit\?case=WEB-1#entry-(\d+)"', page.text)
    assert entry is not None
    audit_page = client.get("/audit?case=WEB-1")
    assert f'id="entry-{entry.group(1)}"' in audit_page.text
    added = client.post(opened.headers["location"] + "/members", data={"username": "ivan", "csrf_token": csrf})
    assert added.status_code == 200 and "ivan added" in added.text
    bad = client.post("/cases", data={**form, "ref": "two words", "csrf_token": csrf})
    assert bad.status_code == 422 and "reference" in bad.text
    xss = client.post("/cases", data={**form, "ref": "X-2", "title": "<script>alert(1)</script>", "csrf_token": csrf})
    assert "<script>alert(1)</script>" not in client.get(xss.headers["location"]).text


# --- every door to a search asks for the case ---------------------------------------------------


def photo_bytes(dev_images) -> bytes:
    return next(d for d in dev_images if d.labelled).path.read_bytes()


def search_form(ref: str, purpose: str = "authorised-investigation") -> dict:
    return {"purpose": purpose, "justification": "case rules test", "case_ref": ref}


def test_the_api_searches_only_under_an_open_case_of_the_caller_for_its_purpose(web, dev_images):
    client, tokens = web
    ids = {}
    for ref, members in (("WEB-1", ["ivan"]), ("WEB-2", ["iris"]), ("WEB-3", ["ivan"])):
        opened = client.post("/api/v1/cases", json={**CASE, "ref": ref, "members": members}, headers=bearer(tokens, "sue"))
        ids[ref] = opened.json()["id"]
    client.post(f"/api/v1/cases/{ids['WEB-3']}/close", json={"reason": "done"}, headers=bearer(tokens, "sue"))
    photo = {"image": ("q.jpg", photo_bytes(dev_images), "image/jpeg")}

    def search(who, form):
        return client.post("/api/v1/search", data=form, files=photo, headers=bearer(tokens, who))

    ok = search("ivan", search_form("WEB-1"))
    assert ok.status_code == 200, ok.text
    for who, form, status, code in [
        ("ivan", search_form("WEB-2"), 404, "not_found"),  # iris's case: as if it did not exist
        ("ivan", search_form("NO-SUCH"), 404, "not_found"),
        ("ivan", search_form("WEB-3"), 422, "case_refused"),  # closed
        ("ivan", search_form("WEB-1", "source-verification"), 422, "case_purpose_mismatch"),
        ("sue", search_form("WEB-1"), 404, "not_found"),  # a supervisor searches under their own cases too
    ]:
        refused = search(who, form)
        assert (refused.status_code, refused.json()["code"]) == (status, code), (who, form)
    copies = search("ivan", {**search_form("WEB-2"), "mode": "copies"})
    assert copies.status_code == 404 and copies.json()["code"] == "not_found"


def test_the_command_line_searches_only_under_an_open_case_of_the_caller(settings, dev_images, tmp_path):
    tokens = add_accounts(Database(settings.db_url), case=None)
    cli(settings, tokens, "sue", "open", "CLI-1", "--title", "t", "--purpose", "authorised-investigation",
        "--authority", "court", "--authorisation-ref", "R-1", "--authorised-on", date.today().isoformat(),
        "--expires", NEXT_MONTH.isoformat(), "--member", "iris")
    photo = next(d for d in dev_images if d.labelled).path

    def search(who):
        return runner.invoke(app, [*cli_base(settings), "--token", tokens[who], "search", str(photo), "--purpose",
                                   "authorised-investigation", "--justification", "x", "--case", "CLI-1"])

    refused = search("ivan")
    assert refused.exit_code != 0 and "no open case 'CLI-1' that you are a member of" in refused.output
    assert search("iris").exit_code == 0
    with Database(settings.db_url).session() as session:
        searches = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "search")))
    assert [(e.actor, e.details["case_ref"]) for e in searches] == [("iris", "CLI-1")]  # the refusal searched nothing


def test_a_cases_page_lists_its_watches_and_evidence_exports(db):
    """Watches and evidence packages made under a case are lines of its activity, filterable."""
    open_one(db)
    with db.session() as session, session.begin():
        audit.record(session, IVAN, "watch.request", "authorised-investigation", watch_id=4, case_ref="C-1")
        audit.record(session, SUE, "watch.approve", "authorised-investigation", watch_id=4, case_ref="C-1")
        audit.record(session, IVAN, "evidence.export", "authorised-investigation", case_ref="C-1", searches=[7, 9],
                     package_sha256="ab" * 32)
        audit.record(session, IVAN, "evidence.export", "authorised-investigation", case_ref="OTHER", searches=[1])
    with db.session() as session:
        shown = cases.activity(session, SUE, "C-1")
        exports = cases.activity(session, IVAN, "C-1", kind="export")["lines"]
    assert [line["summary"] for line in shown["lines"] if line["kind"] == "watch"] == ["watch 4: request",
                                                                                     "watch 4: approve"]
    assert [line["summary"] for line in exports] == [f"exported an evidence package of 2 search(es), sha256 {'ab' * 8}…"]
