"""A running server follows `facetrail reembed`'s switch: once the stored faces are another model's,
the web app searches with that model (its engine, its index, its threshold and bands) without a
restart, a search under way during the switch runs entirely on one model, and a face_model set
explicitly to the old model is refused with a message that says what to do."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.cli import app as cli
from facetrail.errors import Refused
from facetrail.faces.registry import in_use, model_info, stored_model
from facetrail.index import follow_database, open_index
from facetrail.ingest import walk
from facetrail.ingest.reembed import reembed
from facetrail.search.bands import band
from facetrail.search.service import Searcher
from facetrail.store import AuditEntry, Database, Face
from facetrail.store.models import Watch
from facetrail.web import create_app

from .support import (
    SEARCH_FORM,
    add_accounts,
    cli_base,
    folder_ingestor,
    investigator,
    photo_of,
    settings_for,
    upload,
)

runner = CliRunner()
SEARCH = dict(purpose="source-verification", justification="testing", case_ref="T-1")
DLIB, SFACE = "dlib_resnet_v1", "sface_2021dec"
LIMITS = {"investigator": {"hour": 1000, "day": 1000}}  # test 4 searches in a loop


@pytest.fixture
def indexed(tmp_path, db_url, dev_images):
    """A small dlib index (three people), face_model not set, and the test accounts."""
    settings = settings_for(tmp_path / "data", database_url=db_url, search_limits=LIMITS)
    db = Database(settings.db_url)
    photos = [photo_of(dev_images, "madonna", 1), photo_of(dev_images, "bill_gates"),
              photo_of(dev_images, "anthony_hopkins")]
    folder_ingestor(settings, db, open_index(settings, db), *photos).run(walk(photos))
    tokens = add_accounts(db)
    yield settings, db, tokens, photos
    db.close()


def _entry(db, audit_id: int) -> dict:
    with db.session() as session:
        return session.get(AuditEntry, audit_id).details


def _search(client, photo) -> dict:
    response = client.post("/api/v1/search", files=upload(photo.read_bytes()), data=SEARCH_FORM)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_running_app_searches_with_the_new_model_after_the_switch(indexed, dev_images):
    settings, db, tokens, photos = indexed
    query = photo_of(dev_images, "madonna", 0)
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {tokens['ivan']}"}) as client:
        before = _search(client, query)
        assert before["results"][0]["image"]["location"] == str(photos[0])
        entry = _entry(db, before["audit_id"])
        assert entry["model"] == DLIB and entry["threshold"] <= 0.6

        result = runner.invoke(cli, [*cli_base(settings), "reembed", "--model", SFACE],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "no restart needed" in result.output
        assert f"every command (ingest, search, watch, evidence) now uses {SFACE}" in result.output  # nothing to set
        assert "a running `facetrail worker` loads it before its next batch" in result.output

        after = _search(client, query)  # the same app, at once (no follower round waited for)
        assert after["results"][0]["image"]["location"] == str(photos[0])
        entry = _entry(db, after["audit_id"])
        assert entry["model"] == SFACE and entry["index"]["model"] == SFACE
        assert entry["threshold"] > 0.6  # SFace's scale: its calibrated threshold is 1.14, dlib's 0.6
        reference = Searcher.open(settings.model_copy(update={"face_model": SFACE}), db).search(
            query.read_bytes(), actor=investigator(), **SEARCH)
        distance = after["results"][0]["distance"]
        assert distance == pytest.approx(reference.results[0].distance, abs=1e-5)
        assert distance > before["results"][0]["distance"]  # the same pair, measured in SFace's space
        assert after["results"][0]["band"] == band(distance, SFACE)
        assert after["results"][0]["similarity"] != before["results"][0]["similarity"]

        # the earlier search, read back, keeps the bands of the model that measured it
        again = client.get(f"/api/v1/searches/{before['audit_id']}").json()
        assert again["results"][0]["band"] == before["results"][0]["band"]

        with db.session() as session:  # one entry per request: the search switched was not recorded twice
            models = [e.details["model"] for e in session.scalars(
                select(AuditEntry).where(AuditEntry.action == "search").order_by(AuditEntry.id))]
        assert models == [DLIB, SFACE, SFACE]  # the reference search is the last

        # the follower's round settles the app on the new model's searcher
        assert client.app.state.searcher.following().engine.model_name == SFACE
        client.app.state.searcher = client.app.state.searcher.following()
        # what a request records names the model that described its faces: a watch's template
        made = client.post("/api/v1/watches", data={"case_ref": "T-1", "days": "3"},
                           files=upload(query.read_bytes()))
        assert made.status_code == 200, made.text
        with db.session() as session:
            assert session.get(Watch, made.json()["id"]).model == SFACE


def test_a_face_model_set_to_the_old_model_is_refused_with_what_to_do(indexed, dev_images, monkeypatch):
    settings, db, tokens, photos = indexed
    monkeypatch.setenv("FACETRAIL_FACE_MODEL", DLIB)
    pinned = settings_for(settings.data_dir, database_url=settings.database_url, search_limits=LIMITS)
    assert "face_model" in pinned.model_fields_set
    headers = {"Authorization": f"Bearer {tokens['ivan']}"}
    query = photo_of(dev_images, "madonna", 0)
    with TestClient(create_app(pinned), headers=headers) as client:  # started before the switch
        assert _search(client, query)["results"]
        reembed(settings, db, None, SFACE)
        response = client.post("/api/v1/search", files=upload(query.read_bytes()), data=SEARCH_FORM)
        assert response.status_code == 422 and response.json()["code"] == "model_mismatch"
        detail = response.json()["detail"].lower()  # the API capitalises it
        assert f"face_model is set to {DLIB}" in detail and SFACE in detail and "unset face_model" in detail
        with db.session() as session:  # nothing searched with the old model over the new vectors
            assert [e.details["model"] for e in session.scalars(
                select(AuditEntry).where(AuditEntry.action == "search"))] == [DLIB]

    with pytest.raises(Refused) as refused, TestClient(create_app(pinned)):  # a restart with it: refused too
        pass
    assert refused.value.code == "model_mismatch" and f"face_model is set to {DLIB}" in str(refused.value)

    result = runner.invoke(cli, [*cli_base(pinned), "reembed", "--model", DLIB], catch_exceptions=False)
    assert result.exit_code == 0, result.output  # what the message offers: re-embed with the set model
    assert "Nothing to change here" in result.output
    with TestClient(create_app(pinned), headers=headers) as client:
        found = _search(client, query)
        assert _entry(db, found["audit_id"])["model"] == DLIB and found["results"][0]["distance"] < 0.6


def test_the_active_model_follows_the_stored_faces_unless_set(indexed, monkeypatch):
    settings, db, _, _ = indexed
    assert stored_model(db) == DLIB and in_use(settings, db).face_model == DLIB
    reembed(settings, db, None, SFACE)
    assert stored_model(db) == SFACE
    followed = in_use(settings, db)
    assert followed.face_model == SFACE and followed.index_dir.name == f"index-{SFACE}"
    assert "face_model" not in followed.model_fields_set  # it keeps following a later switch
    assert followed.match_threshold == settings.match_threshold  # other settings unchanged
    monkeypatch.setenv("FACETRAIL_FACE_MODEL", DLIB)
    explicit = settings_for(settings.data_dir, database_url=settings.database_url)
    assert in_use(explicit, db).face_model == DLIB  # set: kept, and refused when opened
    with pytest.raises(Refused) as refused:
        Searcher.open(explicit, db)
    assert refused.value.code == "model_mismatch"


def test_searches_during_the_switch_each_use_one_model(indexed, dev_images):
    """Searches run while reembed switches the faces: each answer's distances are those of the model
    its audit entry names (a search mixing the old index with the new faces would not be)."""
    settings, db, tokens, photos = indexed
    query = photo_of(dev_images, "madonna", 0)
    reference = {DLIB: Searcher.open(settings, db).search(query.read_bytes(), actor=investigator(), **SEARCH)}
    answers = []
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {tokens['ivan']}"}) as client:
        switching = threading.Thread(target=reembed, args=(settings, db, None, SFACE))
        switching.start()
        while switching.is_alive():
            answers.append(_search(client, query))
        switching.join()
        answers.append(_search(client, query))
    followed = Searcher.open(in_use(settings, db), db)
    reference[SFACE] = followed.search(query.read_bytes(), actor=investigator(), **SEARCH)
    models = [_entry(db, a["audit_id"])["model"] for a in answers]
    assert models[-1] == SFACE and DLIB in models[:1]  # the first search ran before the switch committed
    for answer, model in zip(answers, models):
        expected = reference[model].results
        assert [(r["face_id"], r["distance"]) for r in answer["results"]] == [
            (m.face_id, pytest.approx(m.distance, abs=1e-5)) for m in expected]
        assert answer["results"][0]["band"] == band(answer["results"][0]["distance"], model)
    assert model_info(SFACE).calibration.match_threshold > model_info(DLIB).calibration.match_threshold


def test_the_follower_round_swaps_in_the_new_model_and_never_feeds_it_old_vectors(indexed, dev_images):
    """The web app's follower round, as create_app wires it: the switch is picked up by the round
    alone (no search needed), and a face an ingest still running with the old model stores after
    the switch never enters the new model's index (the server keeps serving the new model)."""
    settings, db, _, photos = indexed
    held = {"searcher": Searcher.open(in_use(settings, db), db)}

    def following():
        held["searcher"] = searcher = held["searcher"].following()
        return searcher.index, searcher.engine.model_name

    stop = threading.Event()
    follower = threading.Thread(target=follow_database, args=(following, db, stop, 0.05), daemon=True)
    follower.start()
    try:
        reembed(settings, db, None, SFACE)
        deadline = time.monotonic() + 60
        while held["searcher"].engine.model_name != SFACE and time.monotonic() < deadline:
            time.sleep(0.05)
        searcher = held["searcher"]
        assert searcher.engine.model_name == SFACE and searcher.settings.face_model == SFACE
        assert sorted(searcher.index.ids().tolist()) == _face_ids(db)
        with db.session() as session, session.begin():  # a late ingest with the old model
            image_id = session.scalar(select(Face.image_id).limit(1))
            stale = Face(image_id=image_id, idx=99, left=0, top=0, right=1, bottom=1, score=1.0,
                         detector="hog", landmarks=[], model=DLIB,
                         embedding=np.full(128, 0.05, np.float32).tobytes())
            session.add(stale)
            session.flush()
            stale_id = stale.id
        time.sleep(0.5)  # several rounds
        assert held["searcher"] is searcher and stored_model(db) == SFACE  # the latest switch decides
        assert stale_id not in set(searcher.index.ids().tolist())
        query = photo_of(dev_images, "madonna", 0).read_bytes()
        found = searcher.search(query, actor=investigator(), **SEARCH)
        assert found.results[0].image["location"] == str(photos[0])
        assert _entry(db, found.audit_id)["model"] == SFACE
    finally:
        stop.set()
        follower.join(timeout=5)


def _face_ids(db) -> list[int]:
    with db.session() as session:
        return sorted(session.scalars(select(Face.id)))
