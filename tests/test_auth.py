"""Accounts, roles, tokens, sessions, CSRF and lock-out, on the web and the command line."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from facetrail.cli import app as cli
from facetrail.governance import accounts
from facetrail.store import ApiToken, AuditEntry, Database, User
from facetrail.web import create_app

from .support import PASSWORD, SEARCH_FORM, add_accounts, login, settings_for


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    settings = settings_for(tmp_path_factory.mktemp("auth"))
    db = Database(settings.db_url)
    tokens = add_accounts(db)
    with TestClient(create_app(settings)) as client:
        yield client, db, tokens


@pytest.fixture
def client(site):
    client, _, _ = site
    client.cookies.clear()
    return client


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def photo(dev_images):
    return {"image": ("p.jpg", [d for d in dev_images if d.identity == "madonna"][0].path.read_bytes())}


def test_unauthenticated_calls_get_401_and_the_page_redirects_to_login(client):
    response = client.post("/api/v1/search", data=SEARCH_FORM, files={"image": ("a.jpg", b"x")})
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/v1/stats").status_code == 401
    assert client.get("/api/v1/searches/1/faces/1.jpg").status_code == 401
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert client.get("/healthz").status_code == 200


def test_roles_bound_what_tokens_may_do(client, site, dev_images):
    _, _, tokens = site
    assert client.post("/api/v1/search", data=SEARCH_FORM, files=photo(dev_images),
                       headers=bearer(tokens["otto"])).status_code == 403
    assert client.post("/api/v1/search", data=SEARCH_FORM, files=photo(dev_images),
                       headers=bearer(tokens["ada"])).status_code == 403
    ok = client.post("/api/v1/search", data=SEARCH_FORM, files=photo(dev_images), headers=bearer(tokens["sue"]))
    assert ok.status_code == 200
    assert client.get("/api/v1/stats", headers=bearer(tokens["otto"])).status_code == 200


def test_revoked_expired_and_unknown_tokens_are_refused(client, site):
    _, db, _ = site
    with db.session() as session, session.begin():
        admin = accounts.Actor("ada", "admin", "test")
        revoked, revoked_secret = accounts.create_token(session, admin, "ivan", "soon revoked")
        _, expired_secret = accounts.create_token(session, admin, "ivan", "expired")
        accounts.revoke_token(session, admin, revoked.id)
        session.execute(update(ApiToken).where(ApiToken.token_hash == accounts.sha256(expired_secret))
                        .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    for secret in (revoked_secret, expired_secret, "ft_not-a-real-token"):
        assert client.get("/api/v1/stats", headers=bearer(secret)).status_code == 401
    with db.session() as session:
        assert not session.scalar(select(ApiToken).where(ApiToken.token_hash == revoked_secret))  # only hashes


def test_browser_posts_need_the_session_csrf_token(client, dev_images):
    csrf = login(client, "ivan")
    refused = client.post("/api/v1/search", data=SEARCH_FORM, files=photo(dev_images))
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    wrong = client.post("/api/v1/search", data=SEARCH_FORM, files=photo(dev_images), headers={"X-CSRF-Token": "x"})
    assert wrong.status_code == 403
    ok = client.post("/api/v1/search", data=SEARCH_FORM, files=photo(dev_images), headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200
    cookie = client.cookies.jar
    assert any(c.name == "ft_session" and c.has_nonstandard_attr("HttpOnly") for c in cookie)


def test_login_form_without_its_csrf_token_is_refused(client):
    response = client.post("/login", data={"username": "ivan", "password": PASSWORD, "csrf_token": "forged"},
                           follow_redirects=False)
    assert response.status_code == 200 and "expired" in response.text
    assert "ft_session" not in client.cookies


def test_logout_ends_the_session(client):
    csrf = login(client, "ivan")
    assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"


def test_one_time_passwords_must_be_changed_first(client, site):
    _, db, _ = site
    with db.session() as session, session.begin():
        _, one_time = accounts.create_user(session, None, "newbie", "investigator")
    csrf_page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', csrf_page.text).group(1)
    client.post("/login", data={"username": "newbie", "password": one_time, "csrf_token": token})
    assert client.get("/", follow_redirects=False).headers["location"] == "/account/password"
    form = client.get("/account/password")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    assert client.get("/api/v1/stats").status_code == 403
    short = client.post("/account/password", data={"current": one_time, "new": "short", "confirm": "short",
                                                   "csrf_token": csrf})
    assert "12 characters" in short.text
    done = client.post("/account/password", data={"current": one_time, "new": "a much longer secret",
                                                  "confirm": "a much longer secret", "csrf_token": csrf},
                       follow_redirects=False)
    assert done.status_code == 303 and client.get("/api/v1/stats").status_code == 200


def test_a_password_reset_ends_sessions_and_revokes_tokens(client, site):
    """An admin resets a password because its secrets may be known: a browser signed in before
    and a token made before stop working at once, and the entry says what was ended."""
    _, db, _ = site
    admin = accounts.Actor("ada", "admin", "test")
    with db.session() as session, session.begin():
        accounts.create_user(session, None, "rita", "investigator")
        rita = session.scalar(select(User).where(User.username == "rita"))
        rita.password_hash, rita.must_change_password = accounts._hasher.hash(PASSWORD), False
        token, secret = accounts.create_token(session, admin, "rita", "laptop")
    login(client, "rita")
    assert client.get("/api/v1/stats").status_code == 200
    assert client.get("/api/v1/stats", headers=bearer(secret)).status_code == 200
    with db.session() as session, session.begin():
        accounts.reset_password(session, admin, "rita")
    assert client.get("/api/v1/stats").status_code == 401  # the old browser session
    assert client.get("/api/v1/stats", headers=bearer(secret)).status_code == 401
    with db.session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "user.reset_password")
                                .order_by(AuditEntry.id.desc())).first()
        assert entry.details["tokens_revoked"] == [token.id] and entry.details["sessions_ended"] == 1
        assert [t["status"] for t in accounts.list_tokens(session) if t["id"] == token.id] == ["revoked"]


def test_cli_init_users_and_tokens(tmp_path):
    runner = CliRunner()

    proofs = {}  # username -> API token

    def run(*args, user=None):
        identity = ["--token", proofs[user]] if user else []
        return runner.invoke(cli, ["--data-dir", str(tmp_path), *identity, *args], catch_exceptions=False)

    first = run("init", "root", "--token")
    assert first.exit_code == 0 and "One-time password" in first.stdout
    proofs["root"] = re.search(r"(ft_\S+)", first.stdout).group(1)
    assert run("init", "again").exit_code == 2  # only once
    assert run("user", "add", "ivan", "--role", "investigator").exit_code == 2  # who is acting?
    added = run("user", "add", "ivan", "--role", "investigator", user="root")
    assert added.exit_code == 0 and "One-time password" in added.stdout
    assert run("user", "add", "eve", "--role", "emperor", user="root").exit_code == 2
    created = run("token", "create", "--user", "ivan", "--name", "laptop", user="root")
    secret = proofs["ivan"] = re.search(r"(ft_\S+)", created.stdout).group(1)
    not_admin = run("user", "add", "eve", "--role", "admin", user="ivan")
    assert not_admin.exit_code == 2 and "may not" in not_admin.output  # not an admin
    assert "shown only now" in created.stdout
    listed = run("token", "list", user="root").stdout
    assert "laptop" in listed and secret not in listed
    assert run("user", "disable", "ivan", user="root").exit_code == 0
    assert "disabled" in run("user", "list", user="root").stdout
    refused = runner.invoke(cli, ["--data-dir", str(tmp_path), "--token", secret, "stats"])
    assert refused.exit_code == 0  # stats needs no account; searching does:
    search = runner.invoke(cli, ["--data-dir", str(tmp_path), "--token", secret, "search", __file__,
                                 "--purpose", "source-verification", "--justification", "j", "--case", "c"])
    assert search.exit_code == 2 and "not valid" in search.output
    db = Database(settings_for(tmp_path).db_url)
    with db.session() as session:
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.action != "settings.change").order_by(AuditEntry.id)).all()
    assert actions == ["user.create", "token.create", "user.create", "token.create", "user.disable"]
