"""The audit log: auditors browse and filter it in the web app, and nothing queries the vector
index without writing an entry, whichever front door and code path the query takes."""

from __future__ import annotations

import re
import shutil
from contextlib import contextmanager
from datetime import date, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from facetrail.governance.actors import Actor
from facetrail.index import open_index
from facetrail.ingest import walk
from facetrail.search import Searcher
from facetrail.store import AuditEntry, Database
from facetrail.web import create_app

from .support import SEARCH_FORM, folder_ingestor, investigator, login, open_case, photo_of, settings_for, upload

# the entries that account for a query of the index
QUERYING = ("search", "search.approve", "subject_report", "opt_out", "opt_out.apply")
SUPERVISOR = Actor("sue", "supervisor", "test")
ADMIN = Actor("ada", "admin", "test")
SECOND_ADMIN = Actor("adam", "admin", "test")
REQUEST = {"purpose": "trust-and-safety", "justification": "audit test", "case_ref": "AUD-9"}


def test_auditors_filter_the_log_and_see_it_verified(dev_index, dev_images, engine):
    searcher = Searcher(dev_index.settings, dev_index.db, open_index(dev_index.settings, dev_index.db), engine)
    photo = [d for d in dev_images if d.identity == "zhao_wei"][0].path.read_bytes()
    open_case(dev_index.db, "AUD-7", purpose="trust-and-safety")
    searcher.search(photo, actor=investigator(), purpose="trust-and-safety",
                    justification="<script>alert('x')</script>", case_ref="AUD-7")
    with TestClient(create_app(dev_index.settings)) as client:
        login(client, "otto")
        page = client.get("/audit", params={"action": "search", "case": "AUD-7"})
        assert page.status_code == 200 and "intact" in page.text
        rows = re.findall(r"<tr id=\"entry-\d+\"><td>(\d+)</td>", page.text)
        assert len(rows) == 1
        assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text  # escaped
        logins = client.get("/audit", params={"action": "login", "actor": "otto"})
        assert "AUD-7" not in logins.text and ">login<" in logins.text
        client.cookies.clear()
        login(client, "ivan")
        assert client.get("/audit").status_code == 403


class CountingIndex:
    """The real index, counting how often it is searched; every other attribute is the real one's."""

    def __init__(self, index) -> None:
        self.real = index
        self.searches = 0

    def search(self, *args, **kwargs):
        self.searches += 1
        return self.real.search(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __len__(self) -> int:
        return len(self.real)


class Ledger:
    """For each step: how often the index was searched, and the new audit entries that account for it."""

    def __init__(self, db: Database, index: CountingIndex) -> None:
        self.db, self.index = db, index
        self.steps: dict[str, tuple[int, list[str]]] = {}

    @contextmanager
    def step(self, name: str):
        with self.db.session() as session:
            last = session.scalar(select(func.max(AuditEntry.id))) or 0
        searches = self.index.searches
        yield
        queries = self.index.searches - searches
        with self.db.session() as session:
            actions = list(session.scalars(select(AuditEntry.action).where(
                AuditEntry.id > last, AuditEntry.action.in_(QUERYING)).order_by(AuditEntry.id)))
        self.steps[name] = (queries, actions)
        assert len(actions) >= queries, f"{name}: the index was searched {queries} time(s), audit entries {actions}"


def test_every_query_of_the_index_writes_an_audit_entry(dev_index, dev_images, engine):
    """The library and the web app, every path that can query the index: face and copy search,
    a search held for prior approval and approved (its query runs then), earlier results, and a
    subject access report. (Opt-out: the next test.)"""
    settings = dev_index.settings.model_copy(update={"approval_policy": {"investigator": "prior"}})
    index = CountingIndex(open_index(settings, dev_index.db))
    searcher = Searcher(dev_index.settings, dev_index.db, index, engine)  # no approval needed
    held = Searcher(settings, dev_index.db, index, engine)  # investigators need prior approval
    photo = photo_of(dev_images, "keanu_reeves").read_bytes()
    ledger = Ledger(dev_index.db, index)
    open_case(dev_index.db, REQUEST["case_ref"], purpose=REQUEST["purpose"])
    with ledger.step("face search"):
        found = searcher.search(photo, actor=investigator(), **REQUEST)
    with ledger.step("copy search"):
        searcher.copies(photo, actor=investigator(), **REQUEST)
    with ledger.step("search held for approval"):
        waiting = held.search(photo, actor=investigator(), **REQUEST)
    with ledger.step("approval"):
        held.decide(SUPERVISOR, waiting.approval["id"], True, "checked the case file")
    with ledger.step("results of earlier searches"):
        searcher.results_of(investigator(), found.audit_id)
        held.results_of(investigator(), waiting.audit_id)
    with ledger.step("subject report asked"):
        asked = searcher.request_subject_report(ADMIN, photo, request_ref="SAR-9", identity_check="id-document",
                                                received=date.today() - timedelta(days=1))
    with ledger.step("subject report approved"):  # its query runs now
        searcher.decide(SECOND_ADMIN, asked["approval"]["id"], True, "request and identity checked")
    with ledger.step("subject report"):
        searcher.subject_report(ADMIN, asked["search_id"])
    assert found.results and waiting.approval["policy"] == "prior"

    with TestClient(create_app(settings)) as client:  # the web app keeps its searcher in app.state
        client.app.state.searcher.index = web_index = CountingIndex(client.app.state.searcher.index)
        web = Ledger(dev_index.db, web_index)
        as_ivan, as_sue = ({"Authorization": f"Bearer {dev_index.tokens[u]}"} for u in ("ivan", "sue"))
        with web.step("web face search"):
            answer = client.post("/api/v1/search", files=upload(photo), data={**SEARCH_FORM, "mode": "faces"},
                                 headers=as_sue)
        with web.step("web copy search"):
            copies = client.post("/api/v1/search", files=upload(photo), data={**SEARCH_FORM, "mode": "copies"},
                                 headers=as_sue)
        with web.step("web search held for approval"):
            asked = client.post("/api/v1/search", files=upload(photo), data=SEARCH_FORM, headers=as_ivan).json()
        with web.step("web approval"):
            decided = client.post(f"/api/v1/approvals/{asked['approval']['id']}",
                                  json={"decision": "approve", "reason": "checked the case file"}, headers=as_sue)
        with web.step("web results of an earlier search"):
            shown = client.get(f"/api/v1/searches/{asked['audit_id']}", headers=as_ivan)
    assert answer.status_code == copies.status_code == decided.status_code == shown.status_code == 200
    assert shown.json()["results"]

    # each step wrote its own entry, and Ledger.step checked that no step queried more often than it recorded
    assert {name: entry for name, (_, entry) in ledger.steps.items()} == {
        "face search": ["search"],
        "copy search": ["search"],  # the copy hashes, not the vector index: still one entry
        "search held for approval": ["search"],  # nothing queried until a supervisor approves
        "approval": ["search.approve"],
        "results of earlier searches": [],
        "subject report asked": ["search"],  # held for a second admin: nothing queried yet
        "subject report approved": ["search.approve"],
        "subject report": ["subject_report"],
    }
    assert {name: entry for name, (_, entry) in web.steps.items()} == {
        "web face search": ["search"],
        "web copy search": ["search"],
        "web search held for approval": ["search"],
        "web approval": ["search.approve"],
        "web results of an earlier search": [],
    }
    for steps, querying in ((ledger.steps, ("face search", "approval", "subject report approved")),
                            (web.steps, ("web face search", "web approval"))):
        assert all(steps[name][0] >= 1 for name in querying), steps  # the proxy saw each query


def test_an_opt_out_queries_the_index_with_its_entry(tmp_path, dev_images, db_url):
    """A data subject's opt-out searches the index for their faces: its entries are `opt_out` (the
    request) and `opt_out.apply` (the removal, after the answer)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for identity in ("madonna", "tom_hanks"):
        for path in [d.path for d in dev_images if d.identity == identity][:3]:
            shutil.copy(path, folder / f"{identity}-{path.name}")
    settings = settings_for(tmp_path / "data", database_url=db_url)
    db = Database(db_url)
    folder_ingestor(settings, db, open_index(settings, db), folder).run(walk([folder]))
    with TestClient(create_app(settings)) as client:
        client.app.state.searcher.index = index = CountingIndex(client.app.state.searcher.index)
        ledger = Ledger(db, index)
        with ledger.step("opt-out"):
            response = client.post("/api/v1/opt-out", files=upload(photo_of(dev_images, "madonna", 6).read_bytes()),
                                   data={"statement": "yes"})
    assert response.status_code == 200
    queries, actions = ledger.steps["opt-out"]
    assert queries >= 1 and actions == ["opt_out", "opt_out.apply"]


def test_the_ledger_catches_a_query_without_an_entry(dev_index):
    """The check above is not vacuous: searching the index outside a recorded path fails it."""
    index = CountingIndex(open_index(dev_index.settings, dev_index.db))
    ledger = Ledger(dev_index.db, index)
    with pytest.raises(AssertionError, match="unrecorded: the index was searched 1 time"), ledger.step("unrecorded"):
        index.search(np.zeros(128, np.float32), 5)
