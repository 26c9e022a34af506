"""Opt-out: a person (several photos) removed at once, never returned, never shown, never indexed
again; queries of them get nothing; no count tells whether they were indexed; an identical answer."""

from __future__ import annotations

import io
import re
import shutil
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image as Picture
from sqlalchemy import func, select, update

from facetrail.governance.optout import radii
from facetrail.images.decode import decode
from facetrail.index import open_index
from facetrail.ingest import walk
from facetrail.search import Searcher
from facetrail.search import opt_out as opt_outs
from facetrail.store import AuditEntry, Database, Face, Image, Location, OptOut
from facetrail.store.media import MediaStore
from facetrail.store.models import OptOutDay

from .support import SEARCH_FORM, add_accounts, folder_ingestor, investigator, pair_photo, settings_for

SEARCH = dict(purpose="source-verification", justification="check opt-out", case_ref="T-1")


def of(dev_images, identity):
    return [d.path for d in dev_images if d.identity == identity]


def photos(dev_images, identity, *numbers):
    return [("image", (f"{identity}-{n}.jpg", of(dev_images, identity)[n].read_bytes())) for n in numbers]


@pytest.fixture
def site(tmp_path, dev_images, db_url):
    """A small index (madonna, tom_hanks, bill_gates: 4 photos each, and madonna beside bill_gates in
    one photo) on both databases, and the web app."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for identity in ("madonna", "tom_hanks", "bill_gates"):
        for path in of(dev_images, identity)[:4]:
            shutil.copy(path, folder / f"{identity}-{path.name}")
    (folder / "pair.jpg").write_bytes(pair_photo(dev_images, "madonna", "bill_gates"))
    settings = settings_for(tmp_path / "data", database_url=db_url)
    db = Database(db_url)
    folder_ingestor(settings, db, open_index(settings, db), folder).run(walk([folder]))
    tokens = add_accounts(db)
    from facetrail.web import create_app

    with TestClient(create_app(settings)) as client:
        yield client, settings, db, folder, tokens


def api_search(client, tokens, photo: bytes, user="ivan"):
    body = client.post("/api/v1/search", data=SEARCH_FORM, files={"image": ("q.jpg", photo)},
                       headers={"Authorization": f"Bearer {tokens[user]}"}).json()
    assert "results" in body, body
    return body


def madonna_results(client, tokens, dev_images, n=10):
    query = of(dev_images, "madonna")[n].read_bytes()  # photo 10 is not in the index nor in the opt-out
    return [r for r in api_search(client, tokens, query)["results"] if "madonna" in r["image"]["location"]]


def opt_out(client, files, **form):
    response = client.post("/api/v1/opt-out", files=files, data={"statement": "yes", **form})
    assert response.status_code == 200, response.text
    return response


def faces_in_jpeg(engine, data: bytes):
    return engine.faces(decode(data).pixels)


def nearest(engine, data: bytes, vectors: np.ndarray) -> float:
    """The smallest distance between a face found in `data` and `vectors` (inf: no face)."""
    found = faces_in_jpeg(engine, data)
    return min((float(np.linalg.norm(vectors - f.embedding, axis=1).min()) for f in found), default=np.inf)


def descriptors(engine, paths) -> np.ndarray:
    return np.stack([engine.faces(decode(p.read_bytes()).pixels)[0].embedding for p in paths])


def test_a_person_opts_out_with_several_photos_and_disappears(site, dev_images, engine):
    client, settings, db, folder, tokens = site
    assert len(madonna_results(client, tokens, dev_images)) >= 3
    hers = select(Face.embedding).join(Location, Location.image_id == Face.image_id).where(
        Location.location.like("%madonna%") | (Location.location.like("%pair%") & (Face.idx == 0)))
    with db.session() as session:
        assert len(session.scalars(hers).all()) == 5  # 4 of her photos, and the pair photo

    opt_out(client, photos(dev_images, "madonna", 0, 6, 7))  # the `image` field repeated; photo 0 is indexed
    assert madonna_results(client, tokens, dev_images) == []  # at once
    with db.session() as session:
        row = session.scalars(select(OptOut)).one()
        assert row.photos == 3 and len(row.embedding) == 3 * 128 * 4 and row.applied_at is not None
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action.in_(["opt_out", "opt_out.apply"]))).all()
        assert [e.action for e in entries] == ["opt_out", "opt_out.apply"] and entries[0].details["photos"] == 3
        left = [np.frombuffer(blob, np.float32) for blob in session.scalars(hers)]
    assert len(left) <= 3  # photo 0 and its copy in the pair photo are deleted (deletion radius)...
    sent = descriptors(engine, [of(dev_images, "madonna")[n] for n in (0, 6, 7)])
    assert all(min(np.linalg.norm(sent - v, axis=1)) <= 0.6 for v in left)  # ...the rest hidden (blocking radius)
    others = Searcher(settings, db, open_index(settings, db), engine).search(
        of(dev_images, "tom_hanks")[0].read_bytes(), actor=investigator(), **SEARCH)
    assert sum("tom_hanks" in m.image["location"] for m in others.results) >= 4  # others stay


def test_a_search_with_another_photo_of_them_returns_nothing_and_the_audit_says_why(site, dev_images):
    client, _, db, _, tokens = site
    opt_out(client, photos(dev_images, "madonna", 6))
    for n in (9, 10, 11):  # photos of her that are neither indexed nor in the opt-out
        body = api_search(client, tokens, of(dev_images, "madonna")[n].read_bytes())
        assert body["results"] == [] and "opt" not in str(body).lower()  # told only that nothing was found
    bill = api_search(client, tokens, of(dev_images, "bill_gates")[5].read_bytes())
    assert bill["results"]
    with db.session() as session:
        searches = session.scalars(select(AuditEntry).where(AuditEntry.action == "search")
                                   .order_by(AuditEntry.id)).all()
    assert [s.details["blocked_by_opt_out"] for s in searches] == [True, True, True, False]
    assert all(s.details["result_count"] == 0 for s in searches[:3])


def test_results_are_filtered_even_before_the_faces_are_removed(site, dev_images, engine):
    """Between the answer and the removal (or for a face ingested meanwhile), the search filters:
    a query of someone else with a wide threshold never returns a face matching the opt-out."""
    _, settings, db, _, _ = site
    searcher = Searcher(settings, db, open_index(settings, db), engine)
    tom = of(dev_images, "tom_hanks")[0].read_bytes()

    def madonnas():
        found = searcher.search(tom, actor=investigator(), threshold=2.0, top_k=50, **SEARCH)
        return [m for m in found.results if "madonna" in m.image["location"]]

    assert len(madonnas()) >= 4
    opt_outs.take(searcher, [p.read_bytes() for p in of(dev_images, "madonna")[6:9]])  # recorded, not yet applied
    with db.session() as session:
        assert session.scalar(select(OptOut.applied_at)) is None
        assert session.scalar(select(func.count()).select_from(Face)) == 14  # nothing removed yet
    assert madonnas() == []
    opt_outs.finish(searcher, MediaStore(settings.media_dir))
    assert madonnas() == []
    with db.session() as session:
        assert session.scalar(select(OptOut.applied_at)) is not None


def test_the_answer_does_no_index_work(site, dev_images, engine):
    """The part the person waits for reads their photos only: no index search, no deletion, so it
    takes the same time whether or not they were indexed."""
    _, settings, db, _, _ = site
    calls = []

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            if name in ("search", "remove", "add"):
                calls.append(name)
            return getattr(self.inner, name)

        def __len__(self):
            return len(self.inner)

    searcher = Searcher(settings, db, Counting(open_index(settings, db)), engine)
    opt_outs.take(searcher, [of(dev_images, "madonna")[0].read_bytes()])  # an indexed photo of her
    assert calls == []
    opt_outs.finish(searcher, MediaStore(settings.media_dir))
    assert "search" in calls and "remove" in calls


def test_reingest_of_the_same_and_of_reencoded_copies_stores_none_of_them(site, dev_images):
    client, settings, db, folder, tokens = site
    opt_out(client, photos(dev_images, "madonna", 6, 7, 8))
    again = folder.parent / "again"
    shutil.copytree(folder, again)  # the same bytes elsewhere
    copies = folder.parent / "copies"
    copies.mkdir()
    for path in folder.iterdir():  # re-encoded: another quality, a mirror image
        picture = Picture.open(path).convert("RGB").transpose(Picture.Transpose.FLIP_LEFT_RIGHT)
        picture.save(copies / f"{path.stem}.jpg", quality=70)
    summary = folder_ingestor(settings, db, open_index(settings, db), again, copies).run(walk([again, copies]))
    assert summary.opted_out >= 5 and summary.images == 13  # new images: the copies only
    assert madonna_results(client, tokens, dev_images) == []
    with db.session() as session:
        rows = session.execute(select(Location.location, Image.copy_hash, func.count(Face.id))
                               .join(Image, Image.id == Location.image_id).outerjoin(Face, Face.image_id == Image.id)
                               .group_by(Location.location, Image.copy_hash)).all()
    for location, copy_hash, faces in rows:
        if "madonna" in location or "pair" in location:
            assert copy_hash is None, location  # out of copy search, wherever found
        if "/copies/madonna" in location:
            assert faces == 0, location  # new images: her face is not stored
        if "/copies/pair" in location:
            assert faces == 1, location  # bill_gates is


def test_thumbnails_show_no_opted_out_face_before_and_after_reingest(site, dev_images, engine):
    client, settings, db, folder, tokens = site
    media = MediaStore(settings.media_dir)
    madonna = descriptors(engine, of(dev_images, "madonna")[6:9])
    bill = descriptors(engine, of(dev_images, "bill_gates")[:1])
    with db.session() as session:
        shas = dict(session.execute(select(Location.location, Image.sha256).join(Image)).all())
    pair = next(sha for loc, sha in shas.items() if "pair" in loc)
    hers = [sha for loc, sha in shas.items() if "madonna" in loc]
    assert nearest(engine, media.thumb_path(pair).read_bytes(), madonna) < 0.6  # she is recognisable before

    opt_out(client, photos(dev_images, "madonna", 6, 7, 8))
    for sha in hers + [pair]:
        assert nearest(engine, media.thumb_path(sha).read_bytes(), madonna) > 0.6, sha  # blurred on disk
        assert not list(media.crop_path(sha, 0).parent.glob(f"{sha}-*.jpg")) or sha == pair
    # the pair photo is still a result of a search for bill_gates; its thumbnail shows him, not her
    body = api_search(client, tokens, of(dev_images, "bill_gates")[5].read_bytes())
    shown = next(r for r in body["results"] if "pair" in r["image"]["location"])
    thumb = client.get(f"/api/v1/searches/{body['audit_id']}/images/{shown['image']['id']}.jpg",
                       headers={"Authorization": f"Bearer {tokens['ivan']}"})
    assert thumb.status_code == 200
    assert nearest(engine, thumb.content, bill) < 0.6 and nearest(engine, thumb.content, madonna) > 0.6

    copies = folder.parent / "copies"
    copies.mkdir()
    Picture.open(folder / "pair.jpg").save(copies / "pair-again.jpg", quality=70)
    folder_ingestor(settings, db, open_index(settings, db), copies).run(walk([copies]))
    with db.session() as session:
        sha = session.scalar(select(Image.sha256).join(Location).where(Location.location.like("%pair-again%")))
    assert nearest(engine, media.thumb_path(sha).read_bytes(), madonna) > 0.6  # ingested later: blurred too
    assert nearest(engine, media.thumb_path(sha).read_bytes(), bill) < 0.6


def test_copy_search_never_leads_to_their_photos(site, dev_images, engine):
    _, settings, db, folder, _ = site
    searcher = Searcher(settings, db, open_index(settings, db), engine)
    hers = [folder / f"madonna-{p.name}" for p in of(dev_images, "madonna")[:4]] + [folder / "pair.jpg"]
    found = [searcher.copies(p.read_bytes(), actor=investigator(), **SEARCH).copies for p in hers]
    assert all(found)
    opt_outs.take(searcher, [p.read_bytes() for p in of(dev_images, "madonna")[6:9]])
    opt_outs.finish(searcher, MediaStore(settings.media_dir))
    for path in hers:
        assert searcher.copies(path.read_bytes(), actor=investigator(), **SEARCH).copies == [], path
    tom = folder / f"tom_hanks-{of(dev_images, 'tom_hanks')[0].name}"
    assert searcher.copies(tom.read_bytes(), actor=investigator(), **SEARCH).copies  # others stay


def test_no_collateral_deletion_for_people_never_indexed(dev_index, dev_images):
    """Leave-one-identity-out on the whole dev set: everything an opt-out by a person's photos would
    delete (deletion radius, chained) is that person's own face, for every labelled person."""
    from facetrail.governance.optout import reach

    settings, db = dev_index.settings, dev_index.db
    radius = radii(settings)
    index = open_index(settings, db)
    with db.session() as session:
        rows = session.execute(select(Face.id, Face.idx, Face.embedding, Location.location)
                               .join(Location, Location.image_id == Face.image_id)).all()
        owner = {face_id: location.split("/")[-2] for face_id, _, _, location in rows}  # the photo's person
        people = {}
        for _, idx, blob, location in rows:
            if idx == 0:  # the largest face of a labelled photo is its person
                people.setdefault(location.split("/")[-2], []).append(np.frombuffer(blob, np.float32))
        checked = 0
        for person, vectors in people.items():
            if person == "distractors":
                continue
            for start in range(0, len(vectors), 3):  # opt-outs of 3 photos (fewer at the end)
                deleted = reach(session, index, np.stack(vectors[start:start + 3]), radius)
                assert {owner.get(f, "another face") for f in deleted} <= {person}, person
                checked += 1
    assert checked >= 80


def test_many_or_faceless_photos_are_refused_and_nothing_is_recorded(site, dev_images):
    client, _, db, _, _ = site
    eleven = photos(dev_images, "madonna", *range(11))
    response = client.post("/api/v1/opt-out", files=eleven, data={"statement": "yes"})
    assert response.status_code == 422 and response.json()["code"] == "photo_count"
    blank = io.BytesIO()
    Picture.new("RGB", (200, 200), "white").save(blank, "JPEG")
    mixed = photos(dev_images, "madonna", 6) + [("image", ("blank.jpg", blank.getvalue()))]
    response = client.post("/api/v1/opt-out", files=mixed, data={"statement": "yes"})
    assert response.status_code in (400, 422) and response.json()["code"] == "no_face"
    assert "photo 2" in response.json()["detail"]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(OptOut)) == 0


def test_the_answer_is_identical_with_and_without_a_match(site, dev_images):
    client, _, db, _, _ = site
    in_index = opt_out(client, photos(dev_images, "tom_hanks", 7, 8))
    not_in_index = opt_out(client, [("image", ("b.jpg", of(dev_images, "kate_siegel")[0].read_bytes())),
                                    ("image", ("c.jpg", of(dev_images, "nathalie_baye")[0].read_bytes()))])
    assert in_index.content == not_in_index.content
    assert set(in_index.headers) == set(not_in_index.headers)


def test_the_page_takes_several_photos_needs_the_statement_shows_no_images_and_is_rate_limited(site, dev_images):
    client, settings, db, _, tokens = site
    form = client.get("/opt-out")
    assert form.status_code == 200 and "<img" not in form.text
    assert 'name="image"' in form.text and "multiple" in form.text and "three photos or more" in form.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    three = photos(dev_images, "bill_gates", 6, 7, 8)
    unconfirmed = client.post("/opt-out", files=three, data={"csrf_token": token})
    assert unconfirmed.status_code == 422 and "confirm" in unconfirmed.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', unconfirmed.text).group(1)  # each form has its own
    done = client.post("/opt-out", files=three, data={"csrf_token": token, "statement": "yes"})
    assert done.status_code == 200 and "request is recorded" in done.text and "<img" not in done.text
    with db.session() as session:
        assert session.scalar(select(OptOut.photos)) == 3
    assert not [r for r in api_search(client, tokens, of(dev_images, "bill_gates")[10].read_bytes())["results"]]
    forged = client.post("/opt-out", files=three, data={"csrf_token": "forged", "statement": "yes"})
    assert forged.status_code == 403
    photo = photos(dev_images, "bill_gates", 6)
    statuses = [client.post("/api/v1/opt-out", files=photo, data={"statement": "yes"}).status_code
                for _ in range(settings.opt_out_per_hour)]
    assert statuses[-1] == 429
    limited = client.post("/api/v1/opt-out", files=photo, data={"statement": "yes"})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0


def stats(client, tokens, user):
    return client.get("/api/v1/stats", headers={"Authorization": f"Bearer {tokens[user]}"}).json()


def test_no_count_tells_whether_a_person_was_indexed(site, dev_images):
    """Opt-out totals: admins and auditors only, per day, for days that have ended; the face counts
    everyone sees do not move with one opt-out (the insider oracle of faces_removed is closed)."""
    client, _, db, _, tokens = site
    before = {user: stats(client, tokens, user) for user in ("ada", "otto", "sue", "ivan")}
    opt_out(client, photos(dev_images, "madonna", 0, 6, 7))  # indexed: faces of hers deleted, others hidden
    after = {user: stats(client, tokens, user) for user in ("ada", "otto", "sue", "ivan")}
    for user in ("sue", "ivan"):
        assert "opt_outs" not in after[user] and after[user] == before[user]
    for user in ("ada", "otto"):
        assert after[user] == before[user]  # today's opt-out is not visible before the day ends
        assert after[user]["opt_outs"]["opt_outs"] == 0
    with db.session() as session:  # the day ends
        yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
        session.execute(update(OptOutDay).values(day=yesterday))
        session.commit()
        assert session.scalar(select(func.count()).select_from(OptOut).where(OptOut.faces_removed > 0)) == 0
    ended = stats(client, tokens, "otto")
    assert ended["opt_outs"]["opt_outs"] == 1 and ended["opt_outs"]["faces_removed"] >= 2
    assert ended["opt_outs"]["faces_hidden"] >= 1
    assert ended["opt_outs"]["days"] == [{"day": yesterday, **{k: ended["opt_outs"][k] for k in
                                          ("opt_outs", "faces_removed", "faces_hidden")}}]
    assert ended["faces"] == before["otto"]["faces"] - ended["opt_outs"]["faces_removed"]  # now it shows
    assert "opt_outs" not in stats(client, tokens, "ivan")
    from facetrail.governance.report import collect

    with db.session() as session:  # the transparency report: per month
        day = datetime.now(UTC).date()
        report = collect(session, day - timedelta(days=40), day, 0.6)
    month = report["opt_outs_per_month"][yesterday[:7]]
    assert month["faces_removed"] == report["faces_removed"] == ended["opt_outs"]["faces_removed"]


def test_the_radii_come_from_the_models_calibration():
    """Every model the index may use gets its own radii: blocking at its match threshold, deletion
    where its fitted different-person tail is safe at 10 M faces (dlib: the measured 0.35)."""
    from facetrail.config import Settings
    from facetrail.faces.registry import calibration
    from facetrail.governance.optout import SAFE_RATE, safe_radius

    dlib = radii(Settings(face_model="dlib_resnet_v1"))
    assert (dlib.block, dlib.delete) == (0.6, 0.35)
    sface = Settings(face_model="sface_2021dec")
    tail = calibration(sface).tail
    assert radii(sface).block == calibration(sface).match_threshold == 1.14
    assert radii(sface).delete == pytest.approx(safe_radius(tail, SAFE_RATE)) and radii(sface).delete < 1.0
    excess = tail.u - radii(sface).delete  # the fitted rate at the radius is the safe rate
    assert tail.rate * (1 + tail.shape * excess / tail.scale) ** (-1 / tail.shape) == pytest.approx(SAFE_RATE)
    assert radii(Settings(match_threshold=0.5)).block == 0.5  # an explicit threshold still wins


def test_earlier_searches_their_crops_and_thumbnails_show_nothing_of_them_afterwards(site, dev_images, engine):
    """The side doors: a search made before the opt-out, read again by its requester and by a
    supervisor, and the crop and thumbnail URLs it gave."""
    client, _, _, _, tokens = site
    before = api_search(client, tokens, of(dev_images, "madonna")[10].read_bytes())
    hers = [r for r in before["results"] if "madonna" in r["image"]["location"]]
    assert len(hers) >= 3
    auth = {user: {"Authorization": f"Bearer {tokens[user]}"} for user in ("ivan", "sue")}
    assert all(client.get(r["crop_url"], headers=auth["ivan"]).status_code == 200 for r in hers)

    opt_out(client, photos(dev_images, "madonna", 6, 7, 8))
    madonna = descriptors(engine, of(dev_images, "madonna")[6:9])
    for user in ("ivan", "sue"):
        again = client.get(f"/api/v1/searches/{before['audit_id']}", headers=auth[user]).json()
        assert not [r for r in again["results"] if "madonna" in r["image"]["location"]], user
        for r in hers:
            assert client.get(r["crop_url"], headers=auth[user]).status_code == 404
            thumb = client.get(r["thumb_url"], headers=auth[user])
            assert thumb.status_code == 404 or nearest(engine, thumb.content, madonna) > 0.6


def test_an_ingest_already_running_when_the_opt_out_arrives_leaves_them_out(site, dev_images, engine):
    _, settings, db, folder, _ = site
    later = folder.parent / "later"
    later.mkdir()
    for n in (9, 10, 11):
        shutil.copy(of(dev_images, "madonna")[n], later / f"madonna-new-{n}.jpg")
    running = folder_ingestor(settings, db, open_index(settings, db), later)  # started before the opt-out
    searcher = Searcher(settings, db, open_index(settings, db), engine)
    opt_outs.take(searcher, [p.read_bytes() for p in of(dev_images, "madonna")[6:9]])
    summary = running.run(walk([later]))
    assert summary.images == 3 and summary.faces == 0 and summary.opted_out == 3


def test_opt_outs_from_before_the_upgrade_keep_working_and_lose_their_per_person_count(db_url, dev_images, engine):
    """Migration 0014: an opt-out stored earlier (one descriptor, a per-person faces_removed) is
    marked applied, its count moves into the day's total and leaves the row; it still blocks."""
    from alembic import command
    from sqlalchemy import text

    from facetrail.governance.optout import OptOutFilter
    from facetrail.store.db import alembic_config, make_engine

    vector = descriptors(engine, of(dev_images, "madonna")[6:7])[0]
    made = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
    engine_ = make_engine(db_url)
    command.upgrade(alembic_config(engine_), "0013")
    with engine_.begin() as conn:
        conn.execute(text("INSERT INTO opt_outs (created_at, embedding, contact, faces_removed) "
                          "VALUES (:at, :e, NULL, 4)"), {"at": made, "e": vector.tobytes()})
    engine_.dispose()
    db = Database(db_url)  # migrates to the newest revision
    with db.session() as session:
        row = session.scalars(select(OptOut)).one()
        assert (row.photos, row.faces_removed) == (1, 0) and row.applied_at is not None
        day = session.get(OptOutDay, "2026-03-14")
        assert (day.opt_outs, day.faces_removed, day.faces_hidden) == (1, 4, 0)
        assert OptOutFilter.load(session, 0.6, "dlib_resnet_v1").blocked(descriptors(engine, of(dev_images, "madonna")[7:8])).all()


def test_deletion_chains_one_round_and_stops_at_its_budget(tmp_path):
    """Faces in a line 0.28 apart from the opt-out descriptor: the first is within the deletion
    radius, the second within it of the first (chained), the third only within it of the second
    (a second round: not taken), the fourth beyond everything. With a budget of one descriptor
    (the photo itself) nothing is chained and the second face is only hidden."""
    from facetrail.governance.optout import Radii, apply, record

    rng = np.random.default_rng(7)
    origin = rng.normal(0, 0.1, 128).astype(np.float32)
    step = rng.normal(size=128).astype(np.float32)
    step *= 0.28 / np.linalg.norm(step)
    line = [origin + (i + 1) * step for i in range(4)]

    def run(radius: Radii) -> tuple[list[int], list[int]]:
        """(faces left, images out of copy search), by their place on the line."""
        folder = tmp_path / f"{radius.chain}-{radius.seeds}"
        settings = settings_for(folder, database_url=f"sqlite:///{tmp_path / folder.name}.db")
        db = Database(settings.db_url)
        index = open_index(settings, db)
        now = datetime.now(UTC)
        with db.session() as session, session.begin():
            ids, image_ids = [], []
            for n, vector in enumerate(line):
                image = Image(sha256=f"{n:064d}", bytes=1, width=100, height=100, format="JPEG", copy_hash=n,
                              first_seen=now, last_seen=now)
                session.add(image)
                session.flush()
                image_ids.append(image.id)
                face = Face(image_id=image.id, idx=0, left=10, top=10, right=60, bottom=60, score=1.0, detector="test",
                            landmarks=[], model="test", embedding=vector.tobytes())
                session.add(face)
                session.flush()
                ids.append(face.id)
        index.add(np.array(ids, np.int64), np.stack(line))
        with db.session() as session, session.begin():
            apply(session, index, MediaStore(tmp_path / "media"), record(session, origin, None, "test"), radius,
                  "test")
        with db.session() as session:
            left = session.scalars(select(Face.id).order_by(Face.id)).all()
            cleared = session.scalars(select(Image.id).where(Image.copy_hash.is_(None))).all()
        return [ids.index(i) for i in left], [image_ids.index(i) for i in cleared]

    # 1st deleted, 2nd chained; both images out of copy search
    assert run(Radii(block=0.6, delete=0.35, chain=1, seeds=18)) == ([2, 3], [0, 1])
    # no budget: the 2nd only hidden (still out of copy search)
    assert run(Radii(block=0.6, delete=0.35, chain=1, seeds=1)) == ([1, 2, 3], [0, 1])
    # a second round reaches the 3rd (which is beyond the blocking radius of the photo)
    assert run(Radii(block=0.6, delete=0.35, chain=2, seeds=18)) == ([3], [0, 1, 2])
