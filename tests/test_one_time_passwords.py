"""A session signed in with a one-time password may change it and sign out, nothing else
(issue 12, item 4): a supervisor fresh from `user add` tries every page and API call."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from facetrail.governance import accounts
from facetrail.store import AuditEntry, Database
from facetrail.web import create_app

from .support import SEARCH_FORM, image_bytes, upload

NEW_PASSWORD = "a much longer secret"
PAGES = ["/", "/approvals", "/audit", "/reports", "/reports?from=2020-01-01&to=2030-01-01"]


@pytest.fixture
def fresh(settings):
    """A web app and a browser signed in as a new supervisor who has not changed the one-time password."""
    db = Database(settings.db_url)
    with db.session() as session, session.begin():
        _, one_time = accounts.create_user(session, None, "sam", "supervisor")
    with TestClient(create_app(settings), follow_redirects=False) as client:
        form = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        signed_in = client.post("/login", data={"username": "sam", "password": one_time, "csrf_token": token})
        assert signed_in.status_code == 303
        password_page = client.get("/account/password")
        assert password_page.status_code == 200 and "one-time password" in password_page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', password_page.text).group(1)
        yield client, db, one_time, csrf


def audit_count(db) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(AuditEntry))


def test_every_page_sends_a_one_time_password_session_to_change_it(fresh):
    client, db, _, csrf = fresh
    before = audit_count(db)
    for page in PAGES:
        answer = client.get(page)
        assert answer.status_code == 303 and answer.headers["location"] == "/account/password", page
    decide = client.post("/approvals/1", data={"decision": "approve", "reason": "ok", "csrf_token": csrf})
    assert decide.status_code == 303 and decide.headers["location"] == "/account/password"
    assert audit_count(db) == before  # /reports wrote no entry


def test_every_api_call_refuses_a_one_time_password_session(fresh):
    client, db, _, csrf = fresh
    before = audit_count(db)
    calls = [
        ("GET", "/api/v1/stats", {}),
        ("GET", "/api/v1/approvals", {}),
        ("GET", "/api/v1/searches/1", {}),
        ("POST", "/api/v1/search", {"data": SEARCH_FORM, "files": upload(image_bytes("red"))}),
        ("POST", "/api/v1/faces", {"files": upload(image_bytes("red"))}),
        ("POST", "/api/v1/approvals/1", {"json": {"decision": "approve", "reason": "ok"}}),
        ("POST", "/api/v1/confirmations", {"json": {"search_id": 1, "face_id": 1}}),
    ]
    for with_csrf in (False, True):
        headers = {"X-CSRF-Token": csrf} if with_csrf else {}
        for method, path, body in calls:
            answer = client.request(method, path, headers=headers, **body)
            assert answer.status_code == 403, (method, path)
            assert answer.json()["code"] == "password_change_required", (method, path)
            assert "/account/password" in answer.json()["detail"]
    assert audit_count(db) == before


def test_changing_the_password_opens_the_rest_and_signing_out_works(fresh):
    client, _, one_time, csrf = fresh
    changed = client.post("/account/password", data={"current": one_time, "new": NEW_PASSWORD,
                                                      "confirm": NEW_PASSWORD, "csrf_token": csrf})
    assert changed.status_code == 303
    for page in PAGES:
        assert client.get(page).status_code == 200, page
    assert client.get("/api/v1/approvals").status_code == 200
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    assert client.get("/").headers["location"] == "/login"


def test_a_one_time_password_session_can_sign_out(fresh):
    client, db, _, csrf = fresh
    assert client.post("/logout", data={"csrf_token": csrf}).headers["location"] == "/login"
    assert client.get("/account/password").headers["location"] == "/login"
    assert client.get("/api/v1/stats").json()["code"] == "not_authenticated"
    with db.session() as session:
        assert session.scalar(select(AuditEntry.action).order_by(AuditEntry.id.desc()).limit(1)) == "logout"
