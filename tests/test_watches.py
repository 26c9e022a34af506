"""Case-bound watches (issue 18, items 4-6): a supervisor-approved standing search that reports a
person's new appearances. Requests and approvals (who may), firing on a later ingest of a new
photo of the watched person and on nobody else, opt-outs, expiry, stop and renewal, rate limits,
the inbox, the audit log, the transparency report, the CLI and the web; on SQLite and PostgreSQL.
Notification delivery (webhook, SMTP) is in test_watch_notify.py."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from facetrail.cli import app as cli_app
from facetrail.governance import cases, optout, report, watches
from facetrail.governance.actors import Actor
from facetrail.governance.limits import count
from facetrail.index import open_index
from facetrail.ingest import walk
from facetrail.ingest.pool import start_pool
from facetrail.search import Searcher
from facetrail.store import AuditEntry, Database, Face
from facetrail.store.models import Watch, WatchHit
from facetrail.web import create_app

from .support import ACCOUNT_TOKENS, add_accounts, as_user, cli_base, folder_ingestor, login, open_case, settings_for

runner = CliRunner()
IVAN = Actor("ivan", "investigator", "test")
IRIS = Actor("iris", "investigator", "test")
SUE = Actor("sue", "supervisor", "test")
OTTO = Actor("otto", "auditor", "test")
WATCHED, OPTED_OUT, OTHER = "bill_gates", "madonna", "ben_affleck"


def photos(dev_images, identity):
    return [d.path for d in dev_images if d.identity == identity]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """One set of analysis processes for the module's ingests."""
    executor = start_pool(settings_for(tmp_path_factory.mktemp("pool")))
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def db(settings):
    database = Database(settings.db_url)
    add_accounts(database)
    open_case(database, "T-1", members=("ivan", "iris", "sue"))
    open_case(database, "T-2", members=("iris",))
    return database


@pytest.fixture
def searcher(settings, db, engine):
    return Searcher(settings, db, open_index(settings, db), engine)


def ingest(settings, db, searcher, pool, folder, *paths):
    """Copy `paths` into `folder` and ingest it (a new source per folder), as a user would."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.copy(path, folder / f"{path.parent.name}-{path.name}")
    ingestor = folder_ingestor(settings, db, searcher.index, folder)
    ingestor.pool = pool
    return ingestor.run(walk([folder]))


def request(settings, db, searcher, actor, paths, case_ref="T-1", **kwargs) -> int:
    vectors, shas = watches.template([p.read_bytes() for p in paths], searcher.faces_in)
    with db.session() as session, session.begin():
        return watches.request(session, settings, actor, case_ref, vectors, shas, **kwargs).id


def run(db, work, *args, **kwargs):
    with db.session() as session, session.begin():
        result = work(session, *args, **kwargs)
        return watches.describe(session, result) if isinstance(result, Watch) else result


def actions(db, prefix="watch.") -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(AuditEntry.action).where(AuditEntry.action.like(f"{prefix}%"))
                                    .order_by(AuditEntry.id)))


def test_a_member_requests_another_supervisor_approves_and_nobody_else_may(settings, db, searcher, dev_images):
    three = photos(dev_images, WATCHED)[:3]
    with pytest.raises(cases.CaseNotFound):  # not a member of T-2: the same answer as no such case
        request(settings, db, searcher, IVAN, three, case_ref="T-2")
    with pytest.raises(watches.WatchRefused, match="may not search"):
        request(settings, db, searcher, OTTO, three)
    with pytest.raises(watches.WatchRefused, match="1 to 30 days"):
        request(settings, db, searcher, IVAN, three, days=31)
    with pytest.raises(watches.WatchRefused, match="no face"):
        request(settings, db, searcher, IVAN, photos(dev_images, "none")[:1])
    watch_id = request(settings, db, searcher, IVAN, three, days=7, webhook="https://93.184.215.14/hook")
    assert run(db, watches.show, IVAN, watch_id)["state"] == "requested"
    with pytest.raises(watches.WatchRefused, match="only supervisors"):
        run(db, watches.approve, IRIS, watch_id)
    own = request(settings, db, searcher, SUE, three)
    with pytest.raises(watches.WatchRefused, match="another supervisor"):
        run(db, watches.approve, SUE, own)
    approved = run(db, watches.approve, SUE, watch_id)
    assert approved["state"] == "active" and approved["approved_by"] == "sue" and approved["photos"] == 3
    expires = datetime.fromisoformat(approved["expires_at"])
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)
    with pytest.raises(watches.WatchRefused, match="not waiting"):
        run(db, watches.approve, SUE, watch_id)
    assert actions(db) == ["watch.request", "watch.request", "watch.approve"]
    with db.session() as session:  # the photos are not kept: only their descriptors and sha256
        watch = session.get(Watch, watch_id)
        assert len(watch.template) == 3 * 128 * 4 and len(watch.photo_sha256) == 3
    # listed per case: members and supervisors see it, a member of another case does not
    assert [w["id"] for w in run(db, watches.listing, IVAN, "T-1")] == [own, watch_id]
    assert run(db, watches.listing, IRIS, "T-2") == []
    assert run(db, watches.show, IRIS, watch_id)["webhook"] == "(set)"  # another member: not where it goes
    assert run(db, watches.show, IVAN, watch_id)["webhook"] == "https://93.184.215.14/hook"
    with pytest.raises(watches.WatchNotFound):
        run(db, watches.show, Actor("nobody", "investigator", "test"), watch_id)


def test_a_watch_fires_on_a_later_photo_of_the_person_and_on_nobody_else(
        settings, db, searcher, pool, dev_images, tmp_path):
    watched, opted, other = (photos(dev_images, who) for who in (WATCHED, OPTED_OUT, OTHER))
    ingest(settings, db, searcher, pool, tmp_path / "first", watched[5], other[0])
    watch_id = request(settings, db, searcher, IVAN, watched[:3])
    blocked_id = request(settings, db, searcher, IVAN, opted[:2])
    run(db, watches.approve, SUE, watch_id)
    run(db, watches.approve, SUE, blocked_id)
    # the second person opts out (after their watch was approved)
    vectors, _ = watches.template([p.read_bytes() for p in opted[:2]], searcher.faces_in)
    with db.session() as session, session.begin():
        optout.record(session, vectors, None, settings.face_model)
    summary = ingest(settings, db, searcher, pool, tmp_path / "later", watched[3], watched[4], opted[3], other[1],
                     other[2])
    assert summary.images == 5 and summary.opted_out >= 1  # the opted-out person's face is not stored
    with db.session() as session:
        hits = session.scalars(select(WatchHit).order_by(WatchHit.id)).all()
        new_faces = {f.id: f.image_id for f in session.scalars(select(Face))}
        entries = {e.id: e for e in session.scalars(select(AuditEntry).where(AuditEntry.action == "search"))}
    assert [h.watch_id for h in hits] == [watch_id, watch_id]  # the two new photos of the person, nobody else
    assert all(h.state == "shown" and h.distance <= searcher.match_threshold for h in hits)
    assert {new_faces[h.face_id] for h in hits} == {h.image_id for h in hits}
    # each hit is a search in the audit log, by the owner, under the case, counted against the limits
    for hit in hits:
        entry = entries[hit.search_id]
        assert entry.actor == "ivan" and entry.purpose == "source-verification"
        assert entry.details["mode"] == "watch" and entry.details["case_ref"] == "T-1"
        assert entry.details["watch_id"] == watch_id and entry.details["results"] == [[hit.face_id,
                                                                                       round(hit.distance, 6)]]
        assert entry.details["via"] == "watch" and entry.details["outcome"] == "ok"
        assert entry.details["use"]["seconds"] >= 0 and entry.details["index"]["size"] >= 1  # Art. 12(3)
    with db.session() as session:
        assert count(session, "ivan", "hour") == 2
    # the owner sees each hit like a search result of theirs, with the image and where it was found
    shown = searcher.results_of(IVAN, hits[0].search_id)
    assert [m.face_id for m in shown.results] == [hits[0].face_id]
    assert WATCHED in shown.results[0].image["location"] and shown.results[0].band
    # the inbox lists them; ingesting the same photos again reports nothing new
    with db.session() as session, session.begin():
        listed = watches.inbox(session, settings, IVAN)
        assert watches.inbox(session, settings, IRIS) == []
    assert [h["id"] for h in listed] == [hits[1].id, hits[0].id] and listed[0]["case_ref"] == "T-1"
    ingest(settings, db, searcher, pool, tmp_path / "again", watched[3])
    with db.session() as session:
        assert session.query(WatchHit).count() == 2
    # the case page lists the hits as searches; the transparency report counts watches and hits
    activity = run(db, cases.activity, SUE, "T-1", kind="search")
    assert [line["search_id"] for line in activity["lines"]] == [h.search_id for h in hits]
    with db.session() as session:
        data = report.collect(session, date.today(), date.today(), searcher.match_threshold)
    assert data["watches_approved"] == 2 and data["watches_active"] == 2 and data["watch_hits"] == 2
    assert data["searches"] == 2
    # the watched person opts out later: their hits show nothing any more, like any search result
    vectors, _ = watches.template([p.read_bytes() for p in watched[:2]], searcher.faces_in)
    with db.session() as session, session.begin():
        optout.record(session, vectors, None, settings.face_model)
    assert all(searcher.results_of(IVAN, hit.search_id).results == [] for hit in hits)


def test_an_expired_or_stopped_watch_is_silent_and_a_renewal_brings_it_back(settings, db, searcher, dev_images):
    watched = photos(dev_images, WATCHED)
    watch_id = request(settings, db, searcher, IVAN, watched[:3])
    run(db, watches.approve, SUE, watch_id)
    checker = watches.WatchChecker(settings, db)
    new, _ = watches.template([watched[4].read_bytes()], searcher.faces_in)
    with db.session() as session, session.begin():  # the approval ran out a minute ago
        session.execute(update(Watch).where(Watch.id == watch_id).values(
            expires_at=datetime.now(UTC) - timedelta(minutes=1), changed_at=datetime.now(UTC)))
    assert run(db, watches.show, IVAN, watch_id)["state"] == "expired"
    assert checker.check([1], [1], new) == []
    with pytest.raises(watches.WatchRefused, match="only supervisors"):
        run(db, watches.renew, IVAN, watch_id, 10)
    renewed = run(db, watches.renew, SUE, watch_id, 10)
    assert renewed["state"] == "active"
    assert len(checker.check([1], [1], new)) == 1  # the matrix was reloaded: the watch is back
    strict = settings.model_copy(update={"watch_threshold": 0.2})  # FACETRAIL_WATCH_THRESHOLD
    assert watches.WatchChecker(strict, db).check([9], [9], new) == []
    with pytest.raises(watches.WatchRefused, match="owner or a supervisor"):
        run(db, watches.stop, IRIS, watch_id, "not mine")
    assert run(db, watches.stop, IVAN, watch_id, "found what we needed")["state"] == "stopped"
    assert checker.check([2], [2], new) == []
    with pytest.raises(watches.WatchRefused, match="stopped already"):
        run(db, watches.stop, SUE, watch_id)
    # an owner removed from the case, and a closed case, silence its watches too
    other = request(settings, db, searcher, IVAN, watched[:1])
    run(db, watches.approve, SUE, other)
    with db.session() as session, session.begin():
        cases.remove_member(session, SUE, "T-1", "ivan")
    assert checker.check([3], [3], new) == []
    with db.session() as session, session.begin():
        cases.add_member(session, SUE, "T-1", "ivan")
    assert len(checker.check([4], [4], new)) == 1
    with db.session() as session, session.begin():
        cases.close(session, SUE, "T-1", "done")
    assert run(db, watches.show, SUE, other)["state"] == "case closed"
    assert checker.check([5], [5], new) == []
    assert actions(db) == ["watch.request", "watch.approve", "watch.renew", "watch.stop", "watch.request",
                           "watch.approve"]


def test_over_the_owners_limit_a_hit_is_withheld_until_the_limit_has_room(settings, db, searcher, dev_images):
    limited = settings.model_copy(update={"user_search_limits": {"ivan": {"hour": 1}}})
    watched = photos(dev_images, WATCHED)
    watch_id = request(limited, db, searcher, IVAN, watched[:3])
    run(db, watches.approve, SUE, watch_id)
    checker = watches.WatchChecker(limited, db)
    new, _ = watches.template([p.read_bytes() for p in watched[4:6]], searcher.faces_in)
    assert len(checker.check([11, 12], [21, 22], new)) == 2
    with db.session() as session:
        states = [h.state for h in session.scalars(select(WatchHit).order_by(WatchHit.id))]
        assert states == ["shown", "withheld"] and count(session, "ivan", "hour") == 1
    with db.session() as session, session.begin():  # still over the limit: still withheld
        assert [h["state"] for h in watches.inbox(session, limited, IVAN)] == ["withheld", "shown"]
    roomier = settings.model_copy(update={"user_search_limits": {"ivan": {"hour": 2}}})  # as when the hour has passed
    with db.session() as session, session.begin():
        listed = watches.inbox(session, roomier, IVAN)
    assert [h["state"] for h in listed] == ["shown", "shown"] and all(h["search_id"] for h in listed)


def test_the_command_line_requests_approves_lists_and_stops_watches(settings, db, dev_images):
    base = cli_base(settings)
    paths = [str(p) for p in photos(dev_images, WATCHED)[:2]]
    made = runner.invoke(cli_app, [*base, *as_user(settings, "ivan"), "watch", "request", *paths, "--case", "T-1",
                                   "--days", "5"])
    assert made.exit_code == 0, made.output
    watch_id = int(re.search(r"Watch (\d+)", made.output).group(1))
    refused = runner.invoke(cli_app, [*base, *as_user(settings, "ivan"), "watch", "approve", str(watch_id)])
    assert refused.exit_code == 2 and "may not do this (approve)" in refused.output
    approved = runner.invoke(cli_app, [*base, *as_user(settings, "sue"), "watch", "approve", str(watch_id)])
    assert approved.exit_code == 0 and "active until" in approved.output
    listed = runner.invoke(cli_app, [*base, *as_user(settings, "iris"), "watch", "list", "--case", "T-1"])
    assert listed.exit_code == 0 and "active" in listed.output and "ivan" in listed.output
    renewed = runner.invoke(cli_app, [*base, *as_user(settings, "sue"), "watch", "renew", str(watch_id),
                                      "--days", "20"])
    assert renewed.exit_code == 0, renewed.output
    stopped = runner.invoke(cli_app, [*base, *as_user(settings, "ivan"), "watch", "stop", str(watch_id)])
    assert stopped.exit_code == 0 and "stopped" in stopped.output
    inbox = runner.invoke(cli_app, [*base, *as_user(settings, "ivan"), "watch", "inbox"])
    assert inbox.exit_code == 0 and "No hits" in inbox.output
    assert actions(db) == ["watch.request", "watch.approve", "watch.renew", "watch.stop"]


def test_the_web_pages_and_api_request_approve_and_show_hits(settings, db, pool, dev_images, tmp_path):
    watched = photos(dev_images, WATCHED)
    tokens = ACCOUNT_TOKENS[settings.db_url]
    with TestClient(create_app(settings), follow_redirects=False) as client:
        ivan = {"Authorization": f"Bearer {tokens['ivan']}"}
        sue = {"Authorization": f"Bearer {tokens['sue']}"}
        files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in watched[:2]]
        made = client.post("/api/v1/watches", headers=ivan, data={"case_ref": "T-1", "days": "3"}, files=files)
        assert made.status_code == 200, made.text
        watch_id = made.json()["id"]
        assert client.post(f"/api/v1/watches/{watch_id}/approve", headers=ivan).status_code == 403
        assert client.post(f"/api/v1/watches/{watch_id}/approve", headers=sue).json()["state"] == "active"
        assert [w["id"] for w in client.get("/api/v1/watches", headers=ivan, params={"case": "T-1"}).json()] == [
            watch_id]
        searcher = client.app.state.searcher
        ingest(settings, db, searcher, pool, tmp_path / "later", watched[6])
        inbox = client.get("/api/v1/watches/inbox", headers=ivan).json()
        assert len(inbox) == 1 and inbox[0]["watch_id"] == watch_id
        hit = inbox[0]
        # the inbox page: the result card with the crop through the search's authorised route
        csrf = login(client, "ivan")
        assert 'href="/watches/inbox"' in client.get("/").text  # reached from the search page
        page = client.get("/watches/inbox")
        assert page.status_code == 200 and "T-1" in page.text
        crop = f"/api/v1/searches/{hit['search_id']}/faces/{hit['face_id']}.jpg"
        assert crop in page.text and WATCHED in page.text
        assert client.get(crop).status_code == 200
        listing = client.get("/watches")
        assert listing.status_code == 200 and f"watch {watch_id}" in listing.text.lower()
        form = client.post("/watches", data={"case_ref": "T-1", "days": "2", "csrf_token": csrf},
                           files=[("image", (watched[0].name, watched[0].read_bytes(), "image/jpeg"))])
        assert form.status_code == 303
        stop = client.post(f"/watches/{watch_id}/stop", data={"csrf_token": csrf})
        assert stop.status_code == 303
        assert client.get(f"/api/v1/watches/{watch_id}", headers=ivan).json()["state"] == "stopped"
        client.post("/logout", data={"csrf_token": csrf})
        login(client, "iris")  # another investigator: not their inbox, nor the crop
        assert "No hits" in client.get("/watches/inbox").text
        assert client.get(crop).status_code == 404


def test_a_second_crawl_of_a_site_with_a_new_page_fires_the_watch(settings, dev_images, monkeypatch):
    """The demo's story: a site is crawled, a watch is approved, a page with a new photo of the
    person is published, the next crawl reports it, with the page it appeared on."""
    import json

    from .support import Route, serve

    db = Database(settings.db_url)
    add_accounts(db)
    open_case(db, "T-1", members=("ivan",))
    watched, other = photos(dev_images, WATCHED), photos(dev_images, OTHER)

    def cli(*args, user="ivan"):
        result = runner.invoke(cli_app, [*cli_base(settings), *as_user(settings, user), *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    with serve("") as (site,):
        site.routes.update({
            "/": Route.html("<title>Team</title><img src='/img/a.jpg' alt='a colleague'>"),
            "/img/a.jpg": Route.image(other[0].read_bytes()),
        })
        monkeypatch.setenv("FACETRAIL_FETCH_ALLOW", f"127.0.0.1:{site.port}")
        monkeypatch.setenv("FACETRAIL_CRAWL_DELAY", "0")
        cli("source", "add", "news", "--url", site.url("/"), "--legal-basis", "test site pages", user="ada")
        cli("crawl", "news", "--workers", "1", user="ada")
        made = cli("watch", "request", *map(str, watched[:3]), "--case", "T-1", "--days", "7")
        watch_id = re.search(r"Watch (\d+)", made).group(1)
        cli("watch", "approve", watch_id, user="sue")
        assert json.loads(cli("watch", "inbox", "--json")) == []
        site.routes["/"] = Route.html("<title>Team</title><img src='/img/a.jpg' alt='a colleague'>"
                                      "<a href='/story.html'>new story</a>")
        site.routes["/story.html"] = Route.html("<title>A visit</title><img src='/img/b.jpg' alt='our guest'>")
        site.routes["/img/b.jpg"] = Route.image(watched[7].read_bytes())
        cli("crawl", "news", "--workers", "1", user="ada")
    [hit] = json.loads(cli("watch", "inbox", "--json"))
    assert hit["watch_id"] == int(watch_id) and hit["state"] == "shown"
    shown = json.loads(cli("results", str(hit["search_id"]), "--json"))
    [match] = shown["results"]
    assert match["face_id"] == hit["face_id"]
    assert [a["page_url"] for a in match["image"]["appearances"]] == [site.url("/story.html")]


def test_the_watch_threshold_narrows_as_watch_photos_add_up(settings):
    """Every ingested face is checked against every active watch photo: the default threshold
    keeps a stranger's chance of firing any watch at 1 in 1,000 ingested faces, whatever the
    number of watches; FACETRAIL_WATCH_THRESHOLD, when set, is used as it is."""
    from facetrail.faces.registry import calibration
    from facetrail.faces.tail import pair_rate
    from facetrail.governance.watches import WATCH_FPIR, threshold

    calibrated = calibration(settings)
    one, thousand = threshold(settings, 3), threshold(settings, 3000)
    assert thousand < one < calibrated.match_threshold
    chance = -np.expm1(3000 * np.log1p(-pair_rate(thousand, calibrated.tail)))
    assert chance == pytest.approx(WATCH_FPIR, rel=1e-3)
    assert threshold(settings.model_copy(update={"watch_threshold": 0.7}), 3000) == 0.7
