"""Ids beyond what a row id can be (beyond 32 bits, which is PostgreSQL's INTEGER, beyond 64 bits,
negative, zero) are ids of nothing: every route and command that takes an id answers 404 or 422,
never a server error, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from facetrail.cli import app as cli
from facetrail.web import create_app

from .support import cli_base, login

BAD_IDS = [99999999999999999999999, -99999999999999999999999, 2**63, 2**63 - 1, 2**31, -1, 0]


@pytest.fixture(scope="module")
def client(dev_index):
    with TestClient(create_app(dev_index.settings), raise_server_exceptions=False) as client:
        yield client


def routes_with_ids(routes):
    """(path, method) of every route of the app with a path parameter, routers included."""
    for route in routes:
        inner = getattr(route, "original_router", None) or getattr(route, "router", None)
        if inner is not None and inner is not route:
            yield from routes_with_ids(inner.routes)
        elif "{" in getattr(route, "path", "") and getattr(route, "methods", None):
            for method in route.methods - {"HEAD"}:
                yield route.path, method


def fill(path, value, first=None):
    """The path with every parameter set to `value` (the first one to `first`, if given)."""
    names = re.findall(r"{(\w+)}", path)
    for n, name in enumerate(names):
        path = path.replace("{" + name + "}", str(first if n == 0 and first is not None else value))
    return path


def test_every_id_route_answers_404_or_422_to_ids_of_nothing(client, dev_index):
    routes = sorted(set(routes_with_ids(client.app.routes)))
    assert {"/api/v1/searches/{search_id}", "/api/v1/approvals/{approval_id}", "/approvals/{approval_id}",
            "/api/v1/searches/{search_id}/faces/{face_id}.jpg"} <= {p for p, _ in routes}
    sue = {"Authorization": f"Bearer {dev_index.tokens['sue']}"}
    csrf = login(client, "sue")  # the pages act through a signed-in browser
    answered = {}
    for path, method in routes:
        for value in BAD_IDS:
            several = path.count("{") > 1  # then also one id of nothing beside a real one
            for url in {fill(path, value)} | ({fill(path, 2, first=value), fill(path, value, first=1)} if several else set()):
                if path.startswith("/api/"):
                    answer = client.request(method, url, headers=sue,
                                            json={"decision": "approve", "reason": "bounds"} if method == "POST" else None)
                else:
                    answer = client.request(method, url, data={"decision": "approve", "reason": "bounds",
                                                               "csrf_token": csrf})
                answered[(method, url)] = answer.status_code
                if path.startswith("/api/"):
                    assert answer.json()["code"] in ("not_found", "invalid_request"), (url, answer.text)
    wrong = {key: status for key, status in answered.items() if status not in (404, 422)}
    assert not wrong, wrong
    assert len(answered) >= 5 * len(BAD_IDS)


@pytest.mark.parametrize("field", ["search_id", "face_id"])
def test_confirmation_ids_of_nothing(client, dev_index, field):
    ivan = {"Authorization": f"Bearer {dev_index.tokens['ivan']}"}
    for value in [*BAD_IDS, 1e30, "9" * 40, -(10**30)]:
        answer = client.post("/api/v1/confirmations", json={"search_id": 1, "face_id": 1, field: value},
                             headers=ivan)
        assert answer.status_code in (404, 422), (value, answer.text)


def test_commands_refuse_ids_of_nothing(dev_index):
    runner = CliRunner()
    base = cli_base(dev_index.settings)
    as_ = {user: ["--token", dev_index.tokens[user]] for user in ("ivan", "sue", "ada")}
    for value in ("99999999999999999999999", str(2**31), "-1", "0"):
        for user, command in [("ivan", ["results", "--", value]), ("ivan", ["confirm", "--", value, "1"]),
                              ("ivan", ["confirm", "--", "1", value]), ("sue", ["approve", "--reason", "r", "--", value]),
                              ("sue", ["deny", "--reason", "r", "--", value]),
                              ("ada", ["subject-report", "--search", value]),
                              ("ada", ["subject-report", "--approve", value, "--reason", "r"])]:
            result = runner.invoke(cli, [*base, *as_[user], *command])
            assert result.exit_code == 2 and "refused:" in result.output, (command, result.output, result.exception)
