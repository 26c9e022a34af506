"""Searching with several photos of one person (issue 17 item 3): one recorded search whose
results are ranked by the nearest of the photos and say which photo matched; the service, the API
(the `image` field repeated), the CLI (`--one-person`), a photo without a face, a held search
approved later, and the limits on the number and size of photos."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.cli import app as cli_app
from facetrail.governance.actors import Actor
from facetrail.index import open_index
from facetrail.search import Searcher
from facetrail.store import AuditEntry
from facetrail.web import create_app

from .support import SEARCH_FORM, cli_base, image_bytes, investigator

PERSON = "bill_gates"
REQUEST = {"purpose": "source-verification", "justification": "several photos", "case_ref": "T-1"}


def photos_of(dev_images, identity=PERSON) -> list[bytes]:
    return [d.path.read_bytes() for d in dev_images if d.identity == identity]


def found_people(result, dev_images) -> list[str]:
    where = {str(d.path): d.identity for d in dev_images}
    return [where.get(m.image["location"], "?") for m in result.results]


@pytest.fixture(scope="module")
def searcher(dev_index, engine):
    return Searcher(dev_index.settings, dev_index.db, open_index(dev_index.settings, dev_index.db), engine)


def test_three_photos_find_more_of_the_person_than_one_and_say_which_photo_matched(searcher, dev_index, dev_images):
    photos = photos_of(dev_images)[:3]
    one = searcher.search(photos[0], actor=investigator(), top_k=50, **REQUEST)
    three = searcher.search(photos, actor=investigator(), top_k=50, **REQUEST)
    assert three.error is None and len(three.query["photos"]) == 3
    people = found_people(three, dev_images)
    assert people.count(PERSON) >= found_people(one, dev_images).count(PERSON)
    assert people.count(PERSON) >= len(photos_of(dev_images)) - 1  # the person's photos, found
    assert {m.query_photo for m in three.results} <= {0, 1, 2} and len({m.query_photo for m in three.results}) > 1
    distances = [m.distance for m in three.results]
    assert distances == sorted(distances)  # one ranking, by the nearest photo
    with dev_index.db.session() as session:
        entry = session.get(AuditEntry, three.audit_id)
    assert [p["sha256"] for p in entry.details["query_photos"]] == [q["sha256"] for q in three.query["photos"]]
    assert entry.details["result_count"] == len(three.results) and entry.details["outcome"] == "ok"
    again = searcher.results_of(investigator(), three.audit_id)  # read back later: which photo matched, kept
    assert [(m.face_id, m.query_photo) for m in again.results] == [(m.face_id, m.query_photo) for m in three.results]
    assert len(again.query["photos"]) == 3


def test_a_photo_without_a_face_fails_the_whole_search_naming_it(searcher, dev_index, dev_images):
    before = _searches(dev_index)
    result = searcher.search([photos_of(dev_images)[0], image_bytes("red")], actor=investigator(), **REQUEST)
    assert result.error_code == "no_face" and result.error.startswith("photo 2: ") and result.results == []
    assert _searches(dev_index) == before + 1  # recorded, as an error
    with pytest.raises(Exception, match="1 to 10 photos"):
        searcher.search(photos_of(dev_images)[:1] * 11, actor=investigator(), **REQUEST)


def _searches(dev_index) -> int:
    with dev_index.db.session() as session:
        return len(session.scalars(select(AuditEntry.id).where(AuditEntry.action == "search")).all())


def test_a_held_search_with_several_photos_is_run_with_all_of_them_when_approved(dev_index, engine, dev_images):
    settings = dev_index.settings.model_copy(update={"approval_policy": {"investigator": "prior"}})
    held = Searcher(settings, dev_index.db, open_index(dev_index.settings, dev_index.db), engine)
    photos = photos_of(dev_images)[:2]
    result = held.search(photos, actor=investigator(), top_k=50, **REQUEST)
    assert result.results == [] and result.approval["state"] == "pending"
    decided = held.decide(Actor("sue", "supervisor", "test"), result.approval["id"], True, "checked")
    shown = held.results_of(investigator(), result.audit_id)
    people = found_people(shown, dev_images)
    assert decided["state"] == "approved" and people.count(PERSON) >= len(photos_of(dev_images)) - 2
    assert people[0] == PERSON
    # read back, each result still says which photo it matched (both photos are indexed: each finds itself)
    assert {m.query_photo for m in shown.results} == {0, 1}


def test_the_api_takes_the_image_field_repeated(dev_index, dev_images):
    photos = photos_of(dev_images)[:3]
    auth = {"Authorization": f"Bearer {dev_index.tokens['ivan']}"}
    with TestClient(create_app(dev_index.settings)) as client:
        answer = client.post("/api/v1/search", headers=auth, data={**SEARCH_FORM, "top_k": "20"},
                             files=[("image", (f"{n}.jpg", p)) for n, p in enumerate(photos)])
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [p["name"] for p in body["query"]["photos"]] == ["0.jpg", "1.jpg", "2.jpg"]
        assert {r["query_photo"] for r in body["results"]} <= {0, 1, 2} and body["results"][0]["crop_url"]
        single = client.post("/api/v1/search", headers=auth, data=SEARCH_FORM, files={"image": ("a.jpg", photos[0])})
        assert single.status_code == 200 and single.json()["results"][0]["query_photo"] == 0
        eleven = client.post("/api/v1/search", headers=auth, data=SEARCH_FORM,
                             files=[("image", (f"{n}.jpg", photos[0])) for n in range(11)])
        assert eleven.status_code == 422 and eleven.json()["code"] == "too_many_photos"
        copies = client.post("/api/v1/search", headers=auth, data={**SEARCH_FORM, "mode": "copies"},
                             files=[("image", (f"{n}.jpg", p)) for n, p in enumerate(photos[:2])])
        assert copies.status_code == 422 and copies.json()["code"] == "too_many_photos"


def test_the_photos_together_stay_within_the_upload_limit(dev_index, dev_images):
    """Ten photos each just under the limit would make one request hold ten times it: the limit
    is for all the photos of a request together."""
    photo = photos_of(dev_images)[0]
    settings = dev_index.settings.model_copy(update={"upload_max_bytes": int(len(photo) * 2.5)})
    auth = {"Authorization": f"Bearer {dev_index.tokens['ivan']}"}
    with TestClient(create_app(settings)) as client:
        answer = client.post("/api/v1/search", headers=auth, data=SEARCH_FORM,
                             files=[("image", (f"{n}.jpg", photo)) for n in range(3)])
    assert answer.status_code == 413 and "together" in answer.json()["detail"]


def test_the_command_line_searches_several_photos_as_one_person(dev_index, dev_images):
    paths = [str(d.path) for d in dev_images if d.identity == PERSON][:3]
    runner = CliRunner()
    args = [*cli_base(dev_index.settings), "--token", dev_index.tokens["ivan"], "search", *paths, "--one-person",
            "--purpose", "source-verification", "--justification", "cli several", "--case", "T-1"]
    answer = runner.invoke(cli_app, [*args, "--json"])
    assert answer.exit_code == 0, answer.output
    lines = [line for line in answer.output.splitlines() if line.startswith("{")]  # (warnings go to stderr)
    assert len(lines) == 1  # one search, not three
    body = json.loads(lines[0])
    assert len(body["query"]["photos"]) == 3 and body["results"]
    table = runner.invoke(cli_app, args)
    assert table.exit_code == 0 and "photo" in table.output and "3 photos of one person" in table.output
