"""Nobody sees a face except as a result of a search they may see now. Face crops and thumbnails
are served under the search's own URL, only for faces and images among the results that search
shows the caller (their own, or any as a supervisor; not while a prior approval is pending or
after it was refused); confirmations follow the same rule. Everything else is the same 404 as a
route that does not exist: nothing to tell an unknown id from someone else's result."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from facetrail.cli import app as cli
from facetrail.store import AuditEntry, Face, Image
from facetrail.web import create_app

from .support import SEARCH_FORM, cli_base, login, photo_of, upload

NOT_FOUND = {"code": "not_found", "detail": "Not Found."}


@pytest.fixture(scope="module")
def client(dev_index):
    """The web app with investigators under prior approval (supervisors: review)."""
    settings = dev_index.settings.model_copy(
        update={"approval_policy": {"investigator": "prior", "supervisor": "review"}})
    with TestClient(create_app(settings)) as client:
        yield client


def auth(dev_index, user):
    return {"Authorization": f"Bearer {dev_index.tokens[user]}"}


def search(client, dev_index, dev_images, user, identity="madonna", mode="faces"):
    data = photo_of(dev_images, identity, 1).read_bytes()
    answer = client.post("/api/v1/search", files=upload(data), data={**SEARCH_FORM, "mode": mode},
                         headers=auth(dev_index, user))
    assert answer.status_code == 200, answer.text
    return answer.json()


def media(client, dev_index, user, search_id, kind, ids):
    """The statuses of every crop (kind faces) or thumbnail (images) of `ids` under search `search_id`,
    asserting that each refusal is exactly the 404 of a route that does not exist."""
    statuses = {}
    for i in ids:
        answer = client.get(f"/api/v1/searches/{search_id}/{kind}/{i}.jpg", headers=auth(dev_index, user))
        statuses[i] = answer.status_code
        if answer.status_code != 200:
            assert (answer.status_code, answer.json()) == (404, NOT_FOUND), (kind, i)
    return statuses


def every_id(dev_index):
    with dev_index.db.session() as session:
        return (range(1, session.scalar(select(func.max(Face.id))) + 2),
                range(1, session.scalar(select(func.max(Image.id))) + 2))


def test_no_search_no_faces_the_old_media_urls_are_gone(client, dev_index):
    faces, images = every_id(dev_index)
    for url in ("/media/faces/1.jpg", "/media/images/1.jpg", "/media/faces/99999999999999999999999.jpg"):
        answer = client.get(url, headers=auth(dev_index, "ivan"))
        assert (answer.status_code, answer.json()) == (404, NOT_FOUND)
    # an investigator with no search of their own enumerates every id under search ids that are not theirs
    with dev_index.db.session() as session:
        others = session.scalars(select(AuditEntry.id).where(AuditEntry.action == "search",
                                                             AuditEntry.actor != "iris").limit(3)).all()
    for search_id in [*others, 0, -1, 10**9]:
        assert set(media(client, dev_index, "iris", search_id, "faces", faces).values()) == {404}
        assert set(media(client, dev_index, "iris", search_id, "images", images).values()) == {404}


def test_media_only_of_a_visible_search_and_only_its_results(client, dev_index, dev_images):
    faces, images = every_id(dev_index)
    shown = search(client, dev_index, dev_images, "sue")  # review policy: results shown
    crops = {r["face_id"] for r in shown["results"]}
    thumbs = {r["image"]["id"] for r in shown["results"]}
    assert crops and all(r["crop_url"] == f"/api/v1/searches/{shown['audit_id']}/faces/{r['face_id']}.jpg"
                         for r in shown["results"])
    statuses = media(client, dev_index, "sue", shown["audit_id"], "faces", faces)
    assert {i for i, s in statuses.items() if s == 200} == crops  # its results, nothing else
    statuses = media(client, dev_index, "sue", shown["audit_id"], "images", images)
    assert {i for i, s in statuses.items() if s == 200} == thumbs
    for user in ("ivan", "iris", "otto", "ada"):  # another investigator, an auditor, an admin
        assert set(media(client, dev_index, user, shown["audit_id"], "faces", crops).values()) == {404}, user
        assert set(media(client, dev_index, user, shown["audit_id"], "images", thumbs).values()) == {404}, user
        assert client.get(f"/api/v1/searches/{shown['audit_id']}", headers=auth(dev_index, user)).status_code in (403, 404)


def test_a_search_held_for_prior_approval_shows_nothing_until_approved(client, dev_index, dev_images):
    faces, images = every_id(dev_index)
    held = search(client, dev_index, dev_images, "ivan")
    assert held["results"] == [] and held["approval"]["state"] == "pending"
    assert set(media(client, dev_index, "ivan", held["audit_id"], "faces", faces).values()) == {404}
    assert set(media(client, dev_index, "ivan", held["audit_id"], "images", images).values()) == {404}
    assert set(media(client, dev_index, "sue", held["audit_id"], "faces", faces).values()) == {404}

    decided = client.post(f"/api/v1/approvals/{held['approval']['id']}",
                          json={"decision": "approve", "reason": "case file checked"}, headers=auth(dev_index, "sue"))
    assert decided.status_code == 200
    shown = client.get(f"/api/v1/searches/{held['audit_id']}", headers=auth(dev_index, "ivan")).json()
    crops = {r["face_id"] for r in shown["results"]}
    assert crops
    for result in shown["results"]:
        for user in ("ivan", "sue"):  # the requester, and a supervisor
            assert client.get(result["crop_url"], headers=auth(dev_index, user)).status_code == 200
            assert client.get(result["thumb_url"], headers=auth(dev_index, user)).status_code == 200
        assert client.get(result["crop_url"], headers=auth(dev_index, "iris")).status_code == 404

    refused = search(client, dev_index, dev_images, "iris", identity="tom_hanks")
    client.post(f"/api/v1/approvals/{refused['approval']['id']}", json={"decision": "deny", "reason": "no basis"},
                headers=auth(dev_index, "sue"))
    assert set(media(client, dev_index, "iris", refused["audit_id"], "faces", faces).values()) == {404}


def test_copy_search_thumbnails_but_no_crops(client, dev_index, dev_images):
    copies = search(client, dev_index, dev_images, "sue", mode="copies")
    assert copies["copies"]
    found = {c["image"]["id"] for c in copies["copies"]}
    for copy in copies["copies"]:
        assert copy["thumb_url"].startswith(f"/api/v1/searches/{copies['audit_id']}/images/")
        assert client.get(copy["thumb_url"], headers=auth(dev_index, "sue")).status_code == 200
    faces, images = every_id(dev_index)
    statuses = media(client, dev_index, "sue", copies["audit_id"], "images", images)
    assert {i for i, s in statuses.items() if s == 200} == found
    assert set(media(client, dev_index, "sue", copies["audit_id"], "faces", faces).values()) == {404}


def confirm(client, dev_index, user, search_id, face_id):
    return client.post("/api/v1/confirmations", json={"search_id": search_id, "face_id": face_id},
                       headers=auth(dev_index, user))


def test_confirmations_only_by_those_who_may_see_the_results(client, dev_index, dev_images):
    faces, _ = every_id(dev_index)
    shown = search(client, dev_index, dev_images, "sue", identity="bill_gates")
    results = {r["face_id"] for r in shown["results"]}
    # iris probes sue's search: in its results or not, the same answer, and nothing is confirmed
    answers = {(a.status_code, a.text.replace(str(shown["audit_id"]), "N"))
               for a in (confirm(client, dev_index, "iris", shown["audit_id"], f) for f in faces)}
    assert answers == {(404, '{"code":"not_found","detail":"There is no search N."}')}
    unknown = confirm(client, dev_index, "iris", 10**9, next(iter(results)))
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")

    held = search(client, dev_index, dev_images, "ivan", identity="bill_gates")  # prior: pending
    for user in ("ivan", "sue"):
        assert confirm(client, dev_index, user, held["audit_id"], next(iter(results))).status_code == 404
    copies = search(client, dev_index, dev_images, "sue", mode="copies")
    assert confirm(client, dev_index, "sue", copies["audit_id"], next(iter(results))).status_code == 404

    own = confirm(client, dev_index, "sue", shown["audit_id"], next(iter(results)))
    assert own.status_code == 200 and own.json()["state"] == "confirmed"
    stranger = next(f for f in faces if f not in results)  # one's own search: told it was not a result
    assert confirm(client, dev_index, "sue", shown["audit_id"], stranger).status_code == 422

    runner = CliRunner()  # the command line gives the same answer
    cli_answer = runner.invoke(cli, [*cli_base(dev_index.settings), "--token", dev_index.tokens["iris"], "confirm",
                                     str(shown["audit_id"]), str(next(iter(results)))])
    assert cli_answer.exit_code == 2 and f"there is no search {shown['audit_id']}" in cli_answer.output


def test_the_page_of_a_search_opens_only_for_those_who_may_see_it(client, dev_index, dev_images):
    """/searches/{id}, the page behind a results link: another investigator gets the 404 of an id
    of nothing, not an empty page."""
    shown = search(client, dev_index, dev_images, "sue")
    for user, status in (("sue", 200), ("iris", 404)):
        with TestClient(create_app(dev_index.settings)) as browser:
            login(browser, user)
            assert browser.get(f"/searches/{shown['audit_id']}").status_code == status, user
            assert browser.get(f"/searches/{10**9}").status_code == 404
