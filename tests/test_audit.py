"""Auditors browse and filter the audit log in the web app; nothing searches without an entry."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from facetrail.index import open_index
from facetrail.search import Searcher
from facetrail.web import create_app

from .support import investigator, login

SRC = Path(__file__).resolve().parents[1] / "src" / "facetrail"


def test_auditors_filter_the_log_and_see_it_verified(dev_index, dev_images, engine):
    searcher = Searcher(dev_index.settings, dev_index.db, open_index(dev_index.settings, dev_index.db), engine)
    photo = [d for d in dev_images if d.identity == "zhao_wei"][0].path.read_bytes()
    searcher.search(photo, actor=investigator(), purpose="trust-and-safety",
                    justification="<script>alert('x')</script>", case_ref="AUD-7")
    with TestClient(create_app(dev_index.settings)) as client:
        login(client, "otto")
        page = client.get("/audit", params={"action": "search", "case": "AUD-7"})
        assert page.status_code == 200 and "intact" in page.text
        rows = re.findall(r"<tr><td>(\d+)</td>", page.text)
        assert len(rows) == 1
        assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text  # escaped
        logins = client.get("/audit", params={"action": "login", "actor": "otto"})
        assert "AUD-7" not in logins.text and ">login<" in logins.text
        client.cookies.clear()
        login(client, "ivan")
        assert client.get("/audit").status_code == 403


def test_every_query_of_the_vector_index_is_in_a_recorded_path():
    """The vector index is queried only by the Searcher (which records each search) and by
    opt-out (which records the opt-out); a new caller must be added here deliberately."""
    callers = set()
    for path in SRC.rglob("*.py"):
        if path.parent.name != "index" and re.search(r"index\.search\(", path.read_text()):
            callers.add(str(path.relative_to(SRC)))
    assert callers == {"search/service.py", "governance/optout.py"}
    assert "audit.record(" in (SRC / "governance" / "optout.py").read_text()
    # in the Searcher, each method that queries the index (directly or through _neighbours)
    # writes to the audit log in the same function
    service = (SRC / "search" / "service.py").read_text()
    methods = re.split(r"\n    def ", service)
    querying = [m for m in methods if ("index.search(" in m or "self._neighbours(" in m) and not m.startswith("_neighbours")]
    assert len(querying) == 3  # search, subject_report, decide
    for method in querying:
        assert "audit.record(" in method or "record_decision(" in method, method[:40]
