"""Approval policies: review after the fact, prior approval with withheld results, urgent
searches with a deadline; nobody decides on their own search; every decision recorded."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from facetrail.store import Approval, AuditEntry
from facetrail.web import create_app

from .support import open_case

FORM = {"purpose": "authorised-investigation", "justification": "approval test", "case_ref": "A-1"}


@pytest.fixture(scope="module")
def client(dev_index):
    open_case(dev_index.db, FORM["case_ref"], purpose=FORM["purpose"])
    settings = dev_index.settings.model_copy(
        update={"approval_policy": {"investigator": "prior", "supervisor": "review"}, "urgent_roles": ["investigator"]}
    )
    with TestClient(create_app(settings)) as client:
        yield client


def auth(dev_index, user):
    return {"Authorization": f"Bearer {dev_index.tokens[user]}"}


def search(client, dev_index, dev_images, user, **extra):
    photo = [d for d in dev_images if d.identity == "keanu_reeves"][0].path.read_bytes()
    response = client.post("/api/v1/search", data={**FORM, **extra}, files={"image": ("q.png", photo)},
                           headers=auth(dev_index, user))
    assert response.status_code == 200, response.text
    return response.json()


def decide(client, dev_index, user, approval_id, decision, reason="checked the case file"):
    return client.post(f"/api/v1/approvals/{approval_id}", json={"decision": decision, "reason": reason},
                       headers=auth(dev_index, user))


def test_prior_approval_withholds_results_until_a_supervisor_approves(client, dev_index, dev_images):
    asked = search(client, dev_index, dev_images, "ivan")
    assert asked["results"] == [] and asked["approval"]["policy"] == "prior"
    assert asked["approval"]["state"] == "pending"
    with dev_index.db.session() as session:
        held = session.scalar(select(Approval).where(Approval.search_id == asked["audit_id"]))
        assert held.held_embedding is not None and len(held.held_embedding) == 512  # the descriptor, no photo
    waiting = client.get(f"/api/v1/searches/{asked['audit_id']}", headers=auth(dev_index, "ivan")).json()
    assert waiting["results"] == []

    queue = client.get("/api/v1/approvals", headers=auth(dev_index, "sue")).json()
    item = next(q for q in queue if q["search_id"] == asked["audit_id"])
    assert (item["requester"], item["case_ref"], item["justification"]) == ("ivan", "A-1", "approval test")
    assert client.get("/api/v1/approvals", headers=auth(dev_index, "ivan")).status_code == 403

    assert decide(client, dev_index, "sue", item["id"], "approve", reason=" ").status_code == 422  # needs a reason
    approved = decide(client, dev_index, "sue", item["id"], "approve")
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    shown = client.get(f"/api/v1/searches/{asked['audit_id']}", headers=auth(dev_index, "ivan")).json()
    assert len(shown["results"]) >= 3 and all("keanu_reeves" in r["image"]["location"] for r in shown["results"][:3])
    assert client.get(f"/api/v1/searches/{asked['audit_id']}", headers=auth(dev_index, "iris")).status_code == 404
    assert decide(client, dev_index, "sue", item["id"], "deny").status_code == 409  # decided already
    with dev_index.db.session() as session:
        assert session.get(Approval, item["id"]).held_embedding is None  # deleted at the decision
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "search.approve")).all()[-1]
        assert entry.actor == "sue" and entry.details["reason"] == "checked the case file"


def test_denial_deletes_the_held_descriptor_and_shows_nothing(client, dev_index, dev_images):
    asked = search(client, dev_index, dev_images, "iris")
    denied = decide(client, dev_index, "sue", asked["approval"]["id"], "deny", reason="no legal basis")
    assert denied.json()["state"] == "denied"
    assert client.get(f"/api/v1/searches/{asked['audit_id']}", headers=auth(dev_index, "iris")).json()["results"] == []
    with dev_index.db.session() as session:
        assert session.get(Approval, asked["approval"]["id"]).held_embedding is None


def test_nobody_decides_on_their_own_search(client, dev_index, dev_images):
    mine = search(client, dev_index, dev_images, "sue")  # supervisors: review policy, results shown
    assert mine["results"] and mine["approval"]["policy"] == "review"
    refused = decide(client, dev_index, "sue", mine["approval"]["id"], "approve")
    assert refused.status_code == 422 and "own search" in refused.json()["detail"]
    assert decide(client, dev_index, "ivan", mine["approval"]["id"], "approve").status_code == 403


def test_urgent_searches_show_results_at_once_and_are_due_within_48_hours(client, dev_index, dev_images):
    urgent = search(client, dev_index, dev_images, "ivan", urgent="true")
    assert urgent["results"] and urgent["approval"]["policy"] == "urgent"
    assert urgent["approval"]["due_at"] is not None and urgent["approval"]["overdue"] is False
    with dev_index.db.session() as session, session.begin():  # let the deadline pass
        approval = session.get(Approval, urgent["approval"]["id"])
        approval.due_at = approval.created_at.replace(year=approval.created_at.year - 1)
    queue = client.get("/api/v1/approvals", headers=auth(dev_index, "sue")).json()
    assert next(q for q in queue if q["id"] == urgent["approval"]["id"])["overdue"] is True
    decided = decide(client, dev_index, "sue", urgent["approval"]["id"], "approve")
    assert decided.status_code == 200
    with dev_index.db.session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "search.approve")).all()[-1]
        assert entry.details["overdue"] is True
    supervisors_cannot = client.post("/api/v1/search", data={**FORM, "urgent": "true"},
                                     files={"image": ("q.png", b"x")}, headers=auth(dev_index, "sue"))
    assert supervisors_cannot.status_code == 422 and "urgent" in supervisors_cannot.json()["detail"]
