"""Opt-outs, watches and the repeat-subject window keep descriptors per face model (issue 16):
an opt-out or a watch is described by every registered model when it is made (never keeping the
photos), so `facetrail reembed` to another model keeps the person out, and keeps a watch firing;
an opt-out from before (one model's descriptors only) still refuses the switch; query
descriptors of different models are never compared; the 256-d fusion model's opt-outs block."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest
from sqlalchemy import select, text

from facetrail.errors import Refused
from facetrail.governance import retention, watches
from facetrail.governance.actors import Actor
from facetrail.governance.optout import OptOutFilter, radii
from facetrail.governance.report import collect
from facetrail.index import open_index
from facetrail.ingest import walk
from facetrail.ingest.reembed import reembed
from facetrail.search import Searcher
from facetrail.search import opt_out
from facetrail.store import AuditEntry, Database, Face, Location, QueryEmbedding
from facetrail.store.media import MediaStore
from facetrail.store.models import FaceVector, OptOutVector, WatchHit, WatchVector

from .support import add_accounts, folder_ingestor, investigator, open_case, photo_of, settings_for

DLIB, SFACE, FUSION = "dlib_resnet_v1", "sface_2021dec", "fusion_dlib_sface"
SEARCH = dict(purpose="source-verification", justification="testing", case_ref="T-1")
IVAN = investigator()
SUE = Actor("sue", "supervisor", "test")


def _ingest(settings, db, paths):
    ingestor = folder_ingestor(settings, db, open_index(settings, db), *paths)
    return ingestor.run(walk(paths))


def _as(settings, model):
    return settings.model_copy(update={"face_model": model})


def _photos(dev_images, identity, *numbers):
    return [photo_of(dev_images, identity, n) for n in numbers]


def _locations(results) -> list[str]:
    return [m.image["location"] for m in results]


def _entry(db, audit_id) -> dict:
    with db.session() as session:
        return session.get(AuditEntry, audit_id).details


def _faces_of(db, identity) -> int:
    with db.session() as session:
        return len(session.scalars(select(Face.id).join(Location, Location.image_id == Face.image_id)
                                   .where(Location.location.like(f"%{identity}%"))).all())


def test_an_opt_out_made_under_dlib_keeps_the_person_out_after_the_switch_to_sface(settings, dev_images):
    db = Database(settings.db_url)
    madonna = _photos(dev_images, "madonna", *range(12))
    _ingest(settings, db, madonna[:4] + _photos(dev_images, "bill_gates", 0, 1) + _photos(dev_images, "tom_hanks", 0))
    add_accounts(db)
    dlib = Searcher.open(settings, db)
    opt_out.take(dlib, [madonna[n].read_bytes() for n in (0, 6, 7)])
    opt_out.finish(dlib, MediaStore(settings.media_dir))
    with db.session() as session:
        kept = {row.model: row.photos for row in session.scalars(select(OptOutVector))}
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "opt_out")).one().details
    assert kept[DLIB] == 3 and kept[SFACE] == 3 and kept[FUSION] == 3  # every model described her photos
    assert set(entry["models"]) == set(kept) and "embedding" not in str(entry)  # named, never a descriptor
    hidden = _faces_of(db, "madonna")  # her faces within the blocking radius only: kept, never shown
    assert hidden >= 1

    switched = reembed(settings, db, None, SFACE)  # allowed: the opt-out holds SFace's descriptors
    # her hidden faces' crops went at the opt-out, so SFace cannot describe them: the switch drops them
    assert switched.model == SFACE and switched.dropped == hidden and _faces_of(db, "madonna") == 0
    sface = _as(settings, SFACE)
    searcher = Searcher.open(sface, db)
    # (c) a search for her finds nothing, and the audit says why
    found = searcher.search(madonna[10].read_bytes(), actor=IVAN, **SEARCH)
    assert found.results == []
    assert _entry(db, found.audit_id)["blocked_by_opt_out"] and _entry(db, found.audit_id)["model"] == SFACE
    # (a) her faces hidden under dlib stay hidden under SFace: the widest search shows everyone else only
    wide = searcher.search(photo_of(dev_images, "bill_gates", 5).read_bytes(), actor=IVAN, threshold=2.0,
                           top_k=100, **SEARCH)
    shown = _locations(wide.results)
    assert any("bill_gates" in p for p in shown) and any("tom_hanks" in p for p in shown)
    assert not any("madonna" in p for p in shown)
    # (b) a new photo of her ingested with SFace is not stored
    summary = _ingest(sface, db, [madonna[8], photo_of(dev_images, "tom_hanks", 1)])
    assert summary.opted_out >= 1 and _faces_of(db, "madonna") == 0
    assert _faces_of(db, "tom_hanks") == 2  # the other person's new photo is


def test_an_opt_out_from_before_keeps_refusing_the_switch(tmp_path, db_url, dev_images, engine):
    """An opt-out stored before migration 0019 (dlib descriptors only, model not recorded) keeps
    working with dlib, and still refuses a switch to SFace: its descriptors cannot be made now.
    A watch from before keeps its template as its model's descriptors."""
    from alembic import command

    from facetrail.images.decode import decode
    from facetrail.store.db import alembic_config, make_engine

    def descriptor(path):
        return engine.faces(decode(path.read_bytes()).pixels)[0].embedding

    old = make_engine(db_url)
    command.upgrade(alembic_config(old), "0018")
    with old.begin() as conn:
        conn.execute(text("INSERT INTO opt_outs (created_at, embedding, contact, faces_removed, photos, applied_at) "
                          "VALUES (:at, :e, NULL, 0, 1, :at)"),
                     {"at": datetime.now(UTC), "e": np.asarray(descriptor(photo_of(dev_images, "madonna", 6)),
                                                               np.float32).tobytes()})
    old.dispose()
    settings = settings_for(tmp_path / "data", database_url=db_url)
    db = Database(db_url)  # migrated
    with db.session() as session:
        assert [(r.model, r.photos) for r in session.scalars(select(OptOutVector))] == [(DLIB, 1)]
        assert OptOutFilter.load(session, 0.6, DLIB).blocked(descriptor(photo_of(dev_images, "madonna", 7))).all()
        assert len(OptOutFilter.load(session, 1.14, SFACE).vectors) == 0
    _ingest(settings, db, _photos(dev_images, "bill_gates", 0))
    add_accounts(db)
    template = np.stack([descriptor(p) for p in _photos(dev_images, "bill_gates", 1, 2)])
    with db.session() as session, session.begin():  # as a watch was requested before 0019: one model
        watch_id = watches.request(session, settings, IVAN, "T-1", template, ["1" * 64, "2" * 64]).id
    command.downgrade(alembic_config(db.engine), "0018")
    command.upgrade(alembic_config(db.engine), "head")
    with db.session() as session:
        assert [(r.watch_id, r.model, r.photos) for r in session.scalars(select(WatchVector))] == [
            (watch_id, DLIB, 2)]
        assert [(r.model, r.photos) for r in session.scalars(select(OptOutVector))] == [(DLIB, 1)]
    with pytest.raises(Refused) as refused:
        reembed(settings, db, None, SFACE)
    assert refused.value.code == "opt_outs_of_another_model"
    assert "1 opt-out(s) hold no descriptors by sface_2021dec (ids 1)" in str(refused.value)
    with db.session() as session:
        assert session.scalars(select(FaceVector)).all() == []  # refused before any work


def test_a_watch_approved_under_dlib_fires_after_the_switch_to_sface(settings, dev_images):
    db = Database(settings.db_url)
    bill = _photos(dev_images, "bill_gates", *range(6))
    _ingest(settings, db, [bill[5], photo_of(dev_images, "tom_hanks", 0)])
    add_accounts(db)
    dlib = Searcher.open(settings, db)
    described, shas = watches.templates_by_model(settings, [p.read_bytes() for p in bill[:3]], dlib.faces_in)
    with db.session() as session, session.begin():
        watch_id = watches.request(session, settings, IVAN, "T-1", described, shas).id
        watches.approve(session, SUE, watch_id)
        models = watches.describe(session, watches._get(session, watch_id))["models"]
    assert {DLIB, SFACE, FUSION} <= set(models)

    reembed(settings, db, None, SFACE)
    _ingest(_as(settings, SFACE), db, [bill[3], photo_of(dev_images, "tom_hanks", 1)])
    with db.session() as session:
        hits = session.scalars(select(WatchHit)).all()
        located = {h.id: session.scalar(select(Location.location).where(Location.image_id == h.image_id))
                   for h in hits}
    assert [h.watch_id for h in hits] == [watch_id] and "bill_gates" in located[hits[0].id]
    entry = _entry(db, hits[0].search_id)
    assert entry["model"] == SFACE and entry["threshold"] > 0.6  # measured in SFace's space


def test_the_repeat_subject_check_compares_one_models_descriptors_only(tmp_path, db_url, dev_images):
    settings = settings_for(tmp_path / "data", database_url=db_url, repeat_subject_count=2)
    db = Database(db_url)
    add_accounts(db)
    for ref in ("T-2", "T-3"):
        open_case(db, ref)
    fusion, dlib = Searcher.open(_as(settings, FUSION), db), Searcher.open(settings, db)
    madonna = _photos(dev_images, "madonna", 9, 10)

    def held(searcher, photo, case_ref):
        result = searcher.search(photo.read_bytes(), actor=IVAN, **{**SEARCH, "case_ref": case_ref})
        return (result.approval or {}).get("policy") == "prior"

    assert not held(fusion, madonna[0], "T-1")
    assert not held(dlib, madonna[0], "T-2")  # her fusion search is not compared with a dlib descriptor
    assert held(dlib, madonna[1], "T-3")  # her second dlib search, under another case
    with db.session() as session:
        rows = session.scalars(select(QueryEmbedding).order_by(QueryEmbedding.id)).all()
        assert [r.model for r in rows] == [FUSION, DLIB, DLIB]
        # a fusion descriptor holds 2 x 128 values: read as dlib descriptors, its first half would match
        first_half = np.frombuffer(rows[0].embedding, np.float32)[:128]
        assert "T-1" not in retention.similar_searches(session, settings, "ivan", first_half, DLIB)
        assert retention.similar_searches(session, settings, "ivan", np.frombuffer(rows[0].embedding, np.float32),
                                          FUSION) == ["T-1"]
        # the report counts people per model: her dlib searches once, her fusion search once
        assert collect(session, date.today(), date.today())["distinct_subjects"] == 2

    from alembic import command

    from facetrail.store.db import alembic_config

    command.downgrade(alembic_config(db.engine), "0018")  # descriptors from before 0019: the model is
    command.upgrade(alembic_config(db.engine), "head")  # taken from their search's audit entry
    with db.session() as session:
        assert [r.model for r in session.scalars(select(QueryEmbedding).order_by(QueryEmbedding.id))] == [
            FUSION, DLIB, DLIB]


def test_an_opt_out_under_the_fusion_model_blocks_the_persons_faces(tmp_path, db_url, dev_images):
    fusion = settings_for(tmp_path / "data", database_url=db_url, face_model=FUSION)
    db = Database(db_url)
    madonna = _photos(dev_images, "madonna", *range(12))
    _ingest(fusion, db, madonna[:4] + _photos(dev_images, "bill_gates", 0, 1))
    add_accounts(db)
    searcher = Searcher.open(fusion, db)
    before = searcher.search(madonna[10].read_bytes(), actor=IVAN, **SEARCH)
    assert any("madonna" in p for p in _locations(before.results))

    opt_out.take(searcher, [madonna[n].read_bytes() for n in (0, 6, 7)])
    opt_out.finish(searcher, MediaStore(fusion.media_dir))
    with db.session() as session:
        assert OptOutFilter.load(session, radii(fusion).block, FUSION).vectors.shape == (3, 256)
    after = searcher.search(madonna[10].read_bytes(), actor=IVAN, **SEARCH)
    assert after.results == [] and _entry(db, after.audit_id)["blocked_by_opt_out"]
    wide = searcher.search(photo_of(dev_images, "bill_gates", 5).read_bytes(), actor=IVAN, threshold=10.0,
                           top_k=100, **SEARCH)
    assert any("bill_gates" in p for p in _locations(wide.results))
    assert not any("madonna" in p for p in _locations(wide.results))
    summary = _ingest(fusion, db, [madonna[8]])
    assert summary.opted_out >= 1
