"""Every error answer is `{"code": ..., "detail": ...}` (issue 12, item 15): 401, 403, 404,
405, 413, 400, 422 and 429, from the API, from page routes that answer JSON, and from
FastAPI's and Starlette's own errors (unknown route, wrong method, bad fields); and the
OpenAPI document says so."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from facetrail.store import Database
from facetrail.web import create_app

from .support import SEARCH_FORM, add_accounts, image_bytes, login, postgres_database, settings_for, upload

CODE = re.compile(r"[a-z][a-z0-9_]*")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def site(request, tmp_path_factory):
    urls = postgres_database() if request.param == "postgresql" else iter([None])
    url = next(urls)
    settings = settings_for(tmp_path_factory.mktemp("errors"), database_url=url, upload_max_bytes=50_000,
                            opt_out_per_hour=2)
    tokens = add_accounts(Database(settings.db_url))
    with TestClient(create_app(settings), raise_server_exceptions=False, follow_redirects=False) as client:
        yield client, tokens
    for _ in urls:  # drops the PostgreSQL database
        pass


@pytest.fixture
def client(site):
    client, _ = site
    client.cookies.clear()
    return client


def bearer(site, name):
    return {"Authorization": f"Bearer {site[1][name]}"}


def error_body(answer, status: int | None = None, code: str | None = None) -> dict:
    """The answer's body, checked: JSON with exactly a code and a sentence of detail."""
    if status is not None:
        assert answer.status_code == status, answer.text
    assert answer.status_code >= 400
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    body = answer.json()
    assert set(body) == {"code", "detail"}, body
    assert isinstance(body["code"], str) and CODE.fullmatch(body["code"]), body
    assert isinstance(body["detail"], str) and body["detail"].strip(), body
    if code is not None:
        assert body["code"] == code, body
    return body


def test_401_without_or_with_a_bad_credential(client):
    for answer in (client.get("/api/v1/stats"),
                   client.get("/api/v1/stats", headers={"Authorization": "Bearer ft_forged"}),
                   client.get("/api/v1/approvals"),
                   client.post("/api/v1/search", data=SEARCH_FORM, files=upload(image_bytes("red")))):
        error_body(answer, 401, "not_authenticated")
        assert answer.headers["www-authenticate"] == "Bearer"


def test_403_wrong_role_and_missing_csrf_from_the_api_and_the_pages(client, site):
    error_body(client.post("/api/v1/search", data=SEARCH_FORM, files=upload(image_bytes("red")),
                           headers=bearer(site, "otto")), 403, "not_permitted")
    error_body(client.get("/api/v1/approvals", headers=bearer(site, "ivan")), 403, "not_permitted")
    login(client, "sue")
    error_body(client.post("/api/v1/search", data=SEARCH_FORM, files=upload(image_bytes("red"))),
               403, "csrf_token_required")
    # a page route whose refusal is JSON: the approval form without its CSRF token
    error_body(client.post("/approvals/1", data={"decision": "approve", "reason": "x"}), 403, "csrf_token_required")


def test_404_unknown_routes_files_and_ids(client, site):
    error_body(client.get("/api/v1/nothing-here"), 404, "not_found")
    error_body(client.get("/no/such/page"), 404, "not_found")
    error_body(client.get("/static/no-such-file.css"), 404, "not_found")
    error_body(client.get("/api/v1/searches/987654", headers=bearer(site, "ivan")), 404)


def test_405_wrong_method(client, site):
    for answer in (client.get("/api/v1/search", headers=bearer(site, "ivan")),
                   client.delete("/api/v1/stats"),
                   client.put("/login")):
        error_body(answer, 405, "method_not_allowed")
        assert answer.headers["allow"]


def test_422_bad_fields_and_refusals_by_rule(client, site):
    ivan = bearer(site, "ivan")
    photo = upload(image_bytes("red"))
    error_body(client.post("/api/v1/search", data={**SEARCH_FORM, "top_k": "0"}, files=photo, headers=ivan),
               422, "invalid_request")
    error_body(client.post("/api/v1/search", data=SEARCH_FORM, headers=ivan), 422, "invalid_request")
    error_body(client.get("/api/v1/searches/not-a-number", headers=ivan), 422, "invalid_request")
    error_body(client.post("/api/v1/approvals/1", json={"decision": "maybe", "reason": ""},
                           headers=bearer(site, "sue")), 422, "invalid_request")
    error_body(client.post("/api/v1/confirmations", content=b"{not json", headers={**ivan,
               "Content-Type": "application/json"}), 422, "invalid_request")
    refused = error_body(client.post("/api/v1/search", data={**SEARCH_FORM, "purpose": ""}, files=photo,
                                     headers=ivan), 422)
    assert "purpose" in refused["detail"].lower()
    # a page's own query fields are checked the same way
    login(client, "otto")
    error_body(client.get("/audit?from=not-a-date"), 422, "invalid_request")


def test_400_and_413_photo_problems(client, site):
    ivan = bearer(site, "ivan")
    error_body(client.post("/api/v1/search", data=SEARCH_FORM, files=upload(b"plain text, not a photo" * 10),
                           headers=ivan), 400, "not_an_image")
    error_body(client.post("/api/v1/search", data=SEARCH_FORM, files=upload(b"\xff" * 60_000), headers=ivan),
               413, "too_large")


def test_429_with_retry_after(client):
    statuses = []
    for _ in range(3):
        answer = client.post("/api/v1/opt-out", data={"statement": ""}, files=upload(image_bytes("red")))
        statuses.append(error_body(answer)["code"])
    assert statuses[-1] == "rate_limited" and answer.status_code == 429 and int(answer.headers["retry-after"]) > 0


def test_ids_too_large_for_the_database_still_answer_code_and_detail(client, site):
    huge = 99999999999999999999999
    sue = bearer(site, "sue")
    for answer in (client.get(f"/api/v1/searches/{huge}", headers=sue),
                   client.post(f"/api/v1/approvals/{huge}", json={"decision": "deny", "reason": "x"}, headers=sue),
                   client.post("/api/v1/confirmations", json={"search_id": huge, "face_id": huge}, headers=sue)):
        error_body(answer)


def test_an_unexpected_failure_answers_code_and_detail_without_internals(tmp_path):
    """A bug anywhere (here: a route that fails) is a 500 with the same body, and the
    exception's text stays in the server's log."""
    app = create_app(settings_for(tmp_path))

    @app.get("/api/v1/failing")
    def failing():
        raise RuntimeError("internal state: secret-value")

    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/api/v1/failing")
    body = error_body(answer, 500, "internal_error")
    assert "secret-value" not in answer.text and "RuntimeError" not in body["detail"]
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")  # like every answer
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_openapi_document_promises_code_and_detail(client):
    document = client.get("/openapi.json").json()
    schema = document["components"]["schemas"]["ErrorBody"]
    assert set(schema["required"]) == {"code", "detail"}
    operations = [(path, method, op) for path, item in document["paths"].items()
                  for method, op in item.items() if path.startswith("/api/v1/")]
    assert operations
    for path, method, op in operations:
        errors = {status: answer for status, answer in op["responses"].items() if not status.startswith(("1", "2", "3"))}
        assert "4XX" in errors, (method, path)
        for answer in errors.values():
            ref = answer["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorBody"), (method, path, ref)
