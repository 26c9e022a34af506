"""Results are leads: a match is verified only when two different people confirm it."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.cli import app as cli
from facetrail.store import AuditEntry
from facetrail.web import create_app

from .support import SEARCH_ARGS, cli_base, open_case
from .support import as_user as cli_user


@pytest.fixture(scope="module")
def client(dev_index):
    for ref in ("V-1", "V-2", "V-3", "CLI-CASE"):
        open_case(dev_index.db, ref)
    with TestClient(create_app(dev_index.settings)) as client:
        yield client


def as_user(dev_index, name):
    return {"Authorization": f"Bearer {dev_index.tokens[name]}"}


def search(client, dev_index, dev_images, user, case="V-1"):
    photo = [d for d in dev_images if d.identity == "tom_hanks"][1].path.read_bytes()
    form = {"purpose": "source-verification", "justification": "verify", "case_ref": case}
    response = client.post("/api/v1/search", data=form, files={"image": ("q.png", photo)},
                           headers=as_user(dev_index, user))
    assert response.status_code == 200
    return response.json()


def confirm(client, dev_index, user, search_id, face_id):
    return client.post("/api/v1/confirmations", json={"search_id": search_id, "face_id": face_id},
                       headers=as_user(dev_index, user))


def test_two_different_people_turn_a_lead_into_a_verified_match(client, dev_index, dev_images):
    first = search(client, dev_index, dev_images, "ivan")
    face = first["results"][1]["face_id"]
    assert first["results"][1]["verification"]["state"] == "unconfirmed"

    one = confirm(client, dev_index, "ivan", first["audit_id"], face)
    assert one.status_code == 200 and one.json()["state"] == "confirmed"
    again = confirm(client, dev_index, "ivan", first["audit_id"], face)
    assert again.status_code == 409 and "different person" in again.json()["detail"]

    second = search(client, dev_index, dev_images, "iris")  # another investigator, same case
    shown = next(r for r in second["results"] if r["face_id"] == face)
    assert shown["verification"] == {"state": "confirmed", "confirmed_by": ["ivan"]}
    two = confirm(client, dev_index, "iris", second["audit_id"], face)
    assert two.json() == {"face_id": face, "case_ref": "V-1", "state": "verified",
                               "confirmed_by": ["ivan", "iris"]}

    other_case = search(client, dev_index, dev_images, "iris", case="V-2")  # confirmations belong to a case
    assert next(r for r in other_case["results"] if r["face_id"] == face)["verification"]["state"] == "unconfirmed"
    with dev_index.db.session() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "match.confirm")).all()
    assert [(e.actor, e.details["state"]) for e in entries[-2:]] == [("ivan", "confirmed"), ("iris", "verified")]


def test_confirmations_must_come_from_a_search_that_showed_the_face(client, dev_index, dev_images):
    found = search(client, dev_index, dev_images, "ivan", case="V-3")
    shown = {r["face_id"] for r in found["results"]}
    stranger = next(i for i in range(1, 10_000) if i not in shown)
    assert confirm(client, dev_index, "ivan", found["audit_id"], stranger).status_code == 422
    assert confirm(client, dev_index, "ivan", 10**9, found["results"][0]["face_id"]).status_code == 404
    assert confirm(client, dev_index, "otto", found["audit_id"], found["results"][0]["face_id"]).status_code == 403


def test_confirm_from_the_command_line(dev_index, dev_images):
    runner = CliRunner()
    base = cli_base(dev_index.settings)
    photo = str([d for d in dev_images if d.identity == "will_smith"][0].path)
    text = runner.invoke(cli, [*base, *cli_user(dev_index.settings, "ivan"), "search", photo, *SEARCH_ARGS[:-1], "CLI-CASE"]).stdout
    search_id = int(re.search(r"search (\d+);", text).group(1))
    face_id = int(re.search(r"│ 2 +│ (\d+) ", text).group(1))
    result = runner.invoke(cli, [*base, *cli_user(dev_index.settings, "sue"), "confirm", str(search_id), str(face_id)])
    assert result.exit_code == 0 and "confirmed (by sue)" in result.stdout
