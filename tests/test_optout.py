"""Opt-out: a face removed at once, never returned, never indexed again; an identical answer."""

from __future__ import annotations

import re
import shutil

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from facetrail.index import open_index
from facetrail.ingest import walk
from facetrail.search import Searcher
from facetrail.store import AuditEntry, Database, OptOut
from facetrail.web import create_app

from .support import SEARCH_FORM, add_accounts, folder_ingestor, investigator, settings_for


def of(dev_images, identity):
    return [d.path for d in dev_images if d.identity == identity]


@pytest.fixture
def site(tmp_path, dev_images, db_url):
    """A small index (madonna, tom_hanks, bill_gates) on both databases, and the web app."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for identity in ("madonna", "tom_hanks", "bill_gates"):
        for path in of(dev_images, identity)[:4]:
            shutil.copy(path, folder / f"{identity}-{path.name}")
    settings = settings_for(tmp_path / "data", database_url=db_url)
    db = Database(db_url)
    folder_ingestor(settings, db, open_index(settings, db), folder).run(walk([folder]))
    tokens = add_accounts(db)
    with TestClient(create_app(settings)) as client:
        yield client, settings, db, folder, tokens


def madonna_results(client, tokens, dev_images):
    query = of(dev_images, "madonna")[10].read_bytes()  # a photo that is not in the index
    body = client.post("/api/v1/search", data=SEARCH_FORM, files={"image": ("q.jpg", query)},
                       headers={"Authorization": f"Bearer {tokens['ivan']}"}).json()
    assert "results" in body, body
    return [r for r in body["results"] if "madonna" in r["image"]["location"]]


def test_an_opted_out_face_is_removed_and_never_comes_back(site, dev_images, engine):
    client, settings, db, folder, tokens = site
    assert len(madonna_results(client, tokens, dev_images)) >= 3

    selfie = of(dev_images, "madonna")[6].read_bytes()
    response = client.post("/api/v1/opt-out", files={"image": ("me.jpg", selfie)}, data={"statement": "yes"})
    assert response.status_code == 200 and response.json()["status"] == "received"
    assert madonna_results(client, tokens, dev_images) == []  # at once
    with db.session() as session:
        assert session.scalar(select(OptOut.faces_removed)) >= 3
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "opt_out")) == 1

    # re-ingesting the same photos (as new files) stores their other faces but never hers
    again = folder.parent / "again"
    shutil.copytree(folder, again)
    for path in again.iterdir():
        path.write_bytes(path.read_bytes() + b"\0")  # new bytes, so they are analysed again
    summary = folder_ingestor(settings, db, open_index(settings, db), again).run(walk([again]))
    assert summary.opted_out >= 3 and summary.images == 12
    assert madonna_results(client, tokens, dev_images) == []
    searcher = Searcher(settings, db, open_index(settings, db), engine)
    direct = searcher.search(of(dev_images, "madonna")[0].read_bytes(), actor=investigator(), purpose="source-verification",
                             justification="check opt-out", case_ref="T-2")
    assert not [m for m in direct.results if "madonna" in m.image["location"]]
    tom = searcher.search(of(dev_images, "tom_hanks")[0].read_bytes(), actor=investigator(), purpose="source-verification",
                          justification="others stay", case_ref="T-3")
    assert sum("tom_hanks" in m.image["location"] for m in tom.results) >= 4


def test_the_answer_is_identical_with_and_without_a_match(site, dev_images):
    client, _, db, _, _ = site
    in_index = client.post("/api/v1/opt-out", files={"image": ("a.jpg", of(dev_images, "tom_hanks")[7].read_bytes())},
                           data={"statement": "yes"})
    not_in_index = client.post("/api/v1/opt-out", files={"image": ("b.jpg", of(dev_images, "kate_siegel")[0].read_bytes())},
                               data={"statement": "yes"})
    assert in_index.status_code == not_in_index.status_code == 200
    assert in_index.content == not_in_index.content
    with db.session() as session:
        removed = session.scalars(select(OptOut.faces_removed).order_by(OptOut.id)).all()
    assert removed[0] > 0 and removed[1] == 0  # the difference exists only on the inside


def test_the_page_needs_the_statement_shows_no_images_and_is_rate_limited(site, dev_images):
    client, settings, _, _, _ = site
    form = client.get("/opt-out")
    assert form.status_code == 200 and "<img" not in form.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    photo = {"image": ("me.jpg", of(dev_images, "bill_gates")[6].read_bytes())}
    unconfirmed = client.post("/opt-out", files=photo, data={"csrf_token": token})
    assert unconfirmed.status_code == 422 and "confirm" in unconfirmed.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', unconfirmed.text).group(1)  # each form has its own
    done = client.post("/opt-out", files=photo, data={"csrf_token": token, "statement": "yes"})
    assert done.status_code == 200 and "request is recorded" in done.text and "<img" not in done.text
    forged = client.post("/opt-out", files=photo, data={"csrf_token": "forged", "statement": "yes"})
    assert forged.status_code == 403
    statuses = [
        client.post("/api/v1/opt-out", files=photo, data={"statement": "yes"}).status_code
        for _ in range(settings.opt_out_per_hour)
    ]
    assert statuses[-1] == 429
    limited = client.post("/api/v1/opt-out", files=photo, data={"statement": "yes"})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0


def test_admins_see_counts_not_faces(site, dev_images):
    client, _, _, _, tokens = site
    client.post("/api/v1/opt-out", files={"image": ("me.jpg", of(dev_images, "madonna")[6].read_bytes())},
                data={"statement": "yes"})
    stats = client.get("/api/v1/stats", headers={"Authorization": f"Bearer {tokens['ada']}"}).json()
    assert stats["opt_outs"]["opt_outs"] == 1 and stats["opt_outs"]["faces_removed"] >= 3
