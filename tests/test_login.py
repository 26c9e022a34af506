"""Signing in cannot tell accounts apart and cannot be used to lock anyone out (issue 12, item 5).

The attacks: guess names (unknown, disabled, wrong password should all look alike), guess
one account's password from one machine, from many machines, and try to keep the owner
(the admin) out of their account by failing on purpose. Each runs against the real web app
and a real database (SQLite and PostgreSQL); throttling is counted from the audit log, so
the tests read the log to see what was recorded.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from facetrail.governance import accounts, login
from facetrail.governance.audit import record, verify
from facetrail.store import AuditEntry, Database, User
from facetrail.web import create_app

from .support import PASSWORD

OWNER_HOME = "198.51.100.4"  # where the admin usually signs in
ATTACKERS = [f"203.0.113.{n}" for n in range(1, 8)]
WRONG = "wrong username or password"


def with_users(db, *names: str) -> Database:
    """Accounts (investigators; "ada" an admin) with PASSWORD set."""
    with db.session() as session, session.begin():
        for name in names:
            user, one_time = accounts.create_user(session, None, name, "admin" if name == "ada" else "investigator")
            accounts.change_password(session, user, one_time, PASSWORD)
    return db


@pytest.fixture
def site(settings):
    db = with_users(Database(settings.db_url), "ada", "ivan", "gone")
    with db.session() as session, session.begin():
        accounts.set_disabled(session, accounts.Actor("ada", "admin", "test"), "gone", True)
    app = create_app(settings)
    with TestClient(app, client=(OWNER_HOME, 50000)):  # runs the app's start-up once
        yield app, db


def browser(app, address: str) -> TestClient:
    """A browser at `address` (the app is already started)."""
    return TestClient(app, client=(address, 40000), follow_redirects=False)


def sign_in(client: TestClient, username: str, password: str):
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def error_of(page) -> str:
    found = re.search(r'role="alert">([^<]*)<', page.text)
    return found.group(1) if found else ""


def entries(db, action: str) -> list[dict]:
    with db.session() as session:
        return list(session.scalars(select(AuditEntry.details).where(AuditEntry.action == action)
                                    .order_by(AuditEntry.id)))


def test_unknown_disabled_and_wrong_answer_alike_and_are_recorded_with_the_address(site):
    app, db = site
    client = browser(app, "192.0.2.10")
    unknown = sign_in(client, "nobody-here", PASSWORD)
    wrong = sign_in(client, "ivan", "not his password")
    disabled = sign_in(client, "gone", PASSWORD)  # the right password of a disabled account
    pages = [unknown, wrong, disabled]
    assert {p.status_code for p in pages} == {200}
    assert {error_of(p) for p in pages} == {"Wrong username or password."}
    assert all("ft_session" not in p.cookies for p in pages)
    failed = entries(db, "login.failed")
    assert [(e["user"], e["reason"], e["client"]) for e in failed] == [
        ("nobody-here", "unknown user", "192.0.2.10"), ("ivan", "wrong password", "192.0.2.10"),
        ("gone", "disabled", "192.0.2.10")]


def test_guessing_one_account_from_one_address_is_slowed_and_recorded(site):
    app, db = site
    attacker = browser(app, ATTACKERS[0])
    for _ in range(5):
        assert error_of(sign_in(attacker, "ivan", "guess")) == "Wrong username or password."
    for password in ("guess again", PASSWORD):  # even the right password is not checked now
        throttled = sign_in(attacker, "ivan", password)
        assert throttled.status_code == 429 and "ft_session" not in throttled.cookies
        assert "too many failed sign-ins" in error_of(throttled).lower()
        assert 0 < int(throttled.headers["retry-after"]) <= 60
    # an account that does not exist is throttled the same way (nothing tells them apart)
    other = browser(app, ATTACKERS[1])
    for _ in range(5):
        sign_in(other, "ghost", "guess")
    ghost = sign_in(other, "ghost", "guess")
    assert ghost.status_code == 429 and error_of(ghost).split(":")[0] == error_of(throttled).split(":")[0]
    # ivan, from his own machine, is not affected
    assert sign_in(browser(app, "192.0.2.77"), "ivan", PASSWORD).status_code == 303
    throttles = entries(db, "login.throttled")
    assert [(t["user"], t["client"], t["rule"]) for t in throttles] == [
        ("ivan", ATTACKERS[0], "account_address"), ("ghost", ATTACKERS[1], "account_address")]  # once each
    assert [e["user"] for e in entries(db, "login")] == ["ivan"]
    with db.session() as session:
        assert verify(session)[1] is None


def test_a_stranger_cannot_lock_the_admin_out(site):
    app, db = site
    owner = browser(app, OWNER_HOME)
    assert sign_in(owner, "ada", PASSWORD).status_code == 303  # the admin's usual address
    owner.cookies.clear()
    # Strangers fail on purpose from two addresses: each address is slowed after 5 failures,
    # and after 10 the account is slowed for everyone not at an address the admin has used.
    for address in ATTACKERS[:2]:
        attacker = browser(app, address)
        for _ in range(6):
            sign_in(attacker, "ada", "guess")
    third = sign_in(browser(app, ATTACKERS[2]), "ada", "guess")
    assert third.status_code == 429
    # the admin at a new address (a hotel) waits a short while, a minute at most
    hotel = sign_in(browser(app, "192.0.2.99"), "ada", PASSWORD)
    assert hotel.status_code == 429 and int(hotel.headers["retry-after"]) <= 60
    # and from home signs in at once, whatever strangers did
    back = sign_in(owner, "ada", PASSWORD)
    assert back.status_code == 303 and back.headers["location"] == "/"
    assert owner.get("/api/v1/stats").status_code == 200
    assert len([e for e in entries(db, "login.failed") if e["user"] == "ada"]) == 10
    throttles = [(t["client"], t["rule"]) for t in entries(db, "login.throttled") if t["user"] == "ada"]
    assert throttles == [(ATTACKERS[0], "account_address"), (ATTACKERS[1], "account_address"),
                         (ATTACKERS[2], "account"), ("192.0.2.99", "account")]


def test_waits_grow_with_failures_and_end(settings):
    """The rules over time, read from the log at a later moment (no waiting in the test)."""
    db = Database(settings.db_url)  # no accounts needed: names are counted as typed
    machine = "192.0.2.200"

    def attempt(username, password="guess"):
        with db.session() as session:
            try:
                accounts.authenticate(session, username, password, "web", machine)
            except accounts.Refused as exc:
                return exc
            finally:
                session.commit()

    # one machine trying many names (none twice, so only the address counts): ten failures
    # cost nothing, then the address waits a minute
    for n in range(10):
        assert isinstance(attempt(f"name{n}"), accounts.AccountError)
    throttled = attempt("name10")
    assert isinstance(throttled, login.LoginThrottled) and 50 < throttled.retry_after <= 60
    with db.session() as session:
        rule, first = login.wait(session, "otto", machine)
        assert rule.name == "address"
        at = login._now() + timedelta(seconds=first + 1)
        assert login.wait(session, "otto", machine, at=at) is None  # the wait ends
    # two more failures recorded meanwhile (by another server process sharing the database)
    # double the wait twice
    with db.session() as session, session.begin():
        for _ in range(2):
            record(session, None, "login.failed", user="name11", via="web", client=machine, reason="unknown user")
    with db.session() as session:
        rule, longer = login.wait(session, "otto", machine)
        assert rule.name == "address" and 230 < longer <= 240
        assert login.wait(session, "otto", machine, at=login._now() + timedelta(seconds=first + 1)) is not None
        assert login.wait(session, "otto", machine, at=login._now() + timedelta(seconds=longer + 1)) is None
        # another machine is not affected
        assert login.wait(session, "otto", "192.0.2.201") is None


def test_an_old_lockout_no_longer_keeps_anyone_out(settings):
    """Rows locked by the lockout this replaces (locked_until in the future) sign in normally."""
    db = with_users(Database(settings.db_url), "ada")
    with db.session() as session, session.begin():
        session.execute(update(User).where(User.username == "ada")
                        .values(failed_logins=4, locked_until=login._now() + timedelta(minutes=15)))
    with db.session() as session, session.begin():
        assert accounts.authenticate(session, "ada", PASSWORD, "web", OWNER_HOME).username == "ada"
    with db.session() as session:
        ada = session.scalar(select(User).where(User.username == "ada"))
        assert ada.locked_until is None and ada.failed_logins == 0
        assert {u["username"]: u["status"] for u in accounts.list_users(session)}["ada"] == "active"
