"""The audit page shows each entry's details as named fields a person reads, not raw JSON,
with users' text escaped and long values cut."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from facetrail.governance import audit
from facetrail.governance.actors import Actor
from facetrail.store import Database
from facetrail.web import create_app

from .support import add_accounts, login, settings_for


def test_entries_read_as_fields(tmp_path):
    settings = settings_for(tmp_path)
    db = Database(settings.db_url)
    add_accounts(db)
    with db.session() as session, session.begin():
        audit.record(session, Actor("ivan", "investigator", "web"), "search", "trust-and-safety",
                     justification="<b>check</b> the profile photo", case_ref="READ-1", result_count=3,
                     results=[[n, 0.41] for n in range(200)], hold=None)
    with TestClient(create_app(settings)) as client:
        login(client, "otto")
        page = client.get("/audit", params={"case": "READ-1"}).text
    row = re.search(r'<tr id="entry-\d+">.*?</tr>', page, re.S).group(0)
    assert "<dt>justification</dt><dd>&lt;b&gt;check&lt;/b&gt; the profile photo</dd>" in row
    assert "<dt>result count</dt><dd>3</dd>" in row and "<dt>case ref</dt><dd>READ-1</dd>" in row
    assert "<dt>hold</dt>" not in row  # empty fields are left out
    results = re.search(r"<dt>results</dt><dd>([^<]*)</dd>", row).group(1)
    assert results.startswith("[[0, 0.41], [1, 0.41]") and results.endswith("…") and len(results) <= 301
    assert '{"' not in row  # no raw JSON object
