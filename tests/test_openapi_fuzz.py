"""Property-based run of the whole JSON API with schemathesis against the app's own /openapi.json.

Every operation gets generated requests, valid and invalid (boundary and huge numbers, wrong
types, missing and unknown fields, junk uploads, other HTTP methods), sent with a real token to
the real app (real database, the real face model) holding a few indexed photos and a search with
results. Whatever the request, the server answers it without a server error, and the answer is
one the OpenAPI document describes (status code, content type, body schema, headers).

The run is bounded (at most 20 generated cases per operation, plus schemathesis's boundary
cases) and derandomized: the same code gives the same requests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import load_all_checks
from schemathesis.python import asgi

from facetrail.index import open_index
from facetrail.ingest import walk
from facetrail.store import Database
from facetrail.web import create_app

from .support import (
    SEARCH_FORM,
    add_accounts,
    folder_ingestor,
    photo_of,
    postgres_database,
    settings_for,
    upload,
)

INDEXED = [("bill_gates", 0), ("bill_gates", 1), ("bill_gates", 2), ("anthony_hopkins", 0)]
TEST_DB = os.environ.get("FACETRAIL_TEST_DB", "sqlite")  # as in conftest: the database of this pass
SUPERVISED = ("/api/v1/approvals", "/api/v1/cases")  # operations a supervisor answers; an investigator the rest


def _document() -> dict:
    """The app's OpenAPI document (building the app touches no data folder; the fixture's app,
    which serves the requests, must publish the same document)."""
    with tempfile.TemporaryDirectory() as scratch:
        return create_app(settings_for(Path(scratch))).openapi()


OPENAPI = _document()
# Operations are collected from the document at import time: schemathesis 4.32's fixture-based
# loader (`schemathesis.pytest.from_fixture`) fails on pytest 9.2 ('Function' has no `_nodeid`).
schema = schemathesis.openapi.from_dict(OPENAPI)

load_all_checks()
# Not the checks that compare acceptance with the schema (negative_data_rejection,
# positive_data_acceptance): the test steers generated cases towards real data (below), and the
# app refuses schema-valid requests on purpose (an empty photo, a purpose not in the list).
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
def fuzz_setup(tmp_path_factory, dev_images):
    """A fresh data folder (SQLite, or PostgreSQL under FACETRAIL_TEST_DB=postgresql) with four
    indexed photos, the test accounts and one search by ivan with results (awaiting review);
    yields a started in-process client of the app, the tokens, a real query photo and the ids
    of the search, one of its faces and that face's image."""
    folder = tmp_path_factory.mktemp("fuzz-photos")
    for n, (identity, i) in enumerate(INDEXED):
        shutil.copy(photo_of(dev_images, identity, i), folder / f"{n}.jpg")
    databases = postgres_database() if TEST_DB == "postgresql" else iter([None])
    config = settings_for(tmp_path_factory.mktemp("fuzz-data"), database_url=next(databases),
                          opt_out_per_hour=100_000)  # the fuzzer reaches the decoder, not the limit
    db = Database(config.db_url)
    folder_ingestor(config, db, open_index(config, db), folder).run(walk([folder]))
    tokens = add_accounts(db)
    db.close()
    query = photo_of(dev_images, "bill_gates", 3).read_bytes()
    with TestClient(create_app(config), headers={"Authorization": f"Bearer {tokens['ivan']}"}) as client:
        seeded = client.post("/api/v1/search", files=upload(query), data=SEARCH_FORM)
    assert seeded.status_code == 200 and seeded.json()["results"], seeded.text
    found = seeded.json()
    known = {"search_id": found["audit_id"], "face_id": found["results"][0]["face_id"],
             "image_id": found["results"][0]["image"]["id"]}
    app = create_app(config)
    assert app.openapi() == OPENAPI
    try:
        with asgi.get_client(app) as client:  # starts the app (lifespan) once for the module
            yield client, tokens, query, known
    finally:
        asgi.shutdown_lifespans()  # schemathesis keeps a started app running until told to stop
        next(databases, None)  # drops the PostgreSQL database


def steer(case, query: bytes, known: dict) -> None:
    """Three generated cases in four are steered towards things that exist, so the generated
    values also reach the decoder, the face model, the index and real results: a search gets a
    valid purpose, an opt-out its "yes", every other search or faces upload a real photo of a
    face, and ids become the seeded search, its face and its image. Which cases is decided by the
    case's own content, so a case and its replay are steered alike."""
    body = case.body if isinstance(case.body, (dict, list, str, bytes, int, float)) else None
    turn = zlib.crc32(repr((case.method, case.path, case.path_parameters, case.query, body)).encode()) % 4
    if case.media_type == "multipart/form-data" and isinstance(case.body, dict):
        # A form field cannot be null (schemathesis would send the text "None"): leave it out.
        case.body = {name: value for name, value in case.body.items() if value is not None}
    if not turn:
        return
    if isinstance(case.body, dict):
        if case.path == "/api/v1/search":
            case.body.update(SEARCH_FORM)
        elif case.path == "/api/v1/opt-out":
            case.body["statement"] = "yes"
        if turn != 2 and case.path in ("/api/v1/search", "/api/v1/faces"):
            case.body["image"] = query
    for part in (case.path_parameters, case.body):
        if isinstance(part, dict):
            part.update({name: known[name] for name in part if name in known})


@schema.parametrize()
@settings(max_examples=20, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case, fuzz_setup):
    client, tokens, query, known = fuzz_setup
    steer(case, query, known)
    user = "sue" if case.path.startswith(SUPERVISED) else "ivan"
    case.call_and_validate(session=client, base_url="http://testserver",
                           headers={"Authorization": f"Bearer {tokens[user]}"}, checks=CHECKS)
