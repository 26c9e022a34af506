"""Folder ingest on SQLite and PostgreSQL: bad files, duplicates, reruns, changes."""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import pytest
from sqlalchemy import func, select

from facetrail.index import open_index
from facetrail.ingest import walk
from facetrail.search import Searcher
from facetrail.store import AuditEntry, Database, Face, Image, Location
from facetrail.store.media import MediaStore

from .support import add_accounts, folder_ingestor, investigator, settings_for, write_hostile_files


@pytest.fixture
def photos(tmp_path, dev_images):
    """Four photos of two people, copied into a scratch folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    picked = [d for d in dev_images if d.identity == "anthony_hopkins"][:2]
    picked += [d for d in dev_images if d.identity == "bill_gates"][:2]
    for i, d in enumerate(picked):
        shutil.copy(d.path, folder / f"{i}-{d.identity}{d.path.suffix}")
    return folder


def ingest(settings, *paths):
    db = Database(settings.db_url)
    index = open_index(settings, db)
    summary = folder_ingestor(settings, db, index, *paths).run(walk(list(paths)))
    return db, index, summary


def count(db, model):
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_bad_files_are_reported_and_the_rest_is_indexed(settings, photos):
    good = next(photos.glob("*.jpg")).read_bytes()
    expected = write_hostile_files(photos / "bad", good)
    db, index, summary = ingest(settings, photos)

    assert summary.images == 4
    assert summary.faces >= 4
    assert dict(summary.skipped) == {reason: 1 for reason in expected.values()}
    reported = {os.path.basename(location): reason for location, reason, _ in summary.errors}
    assert reported == expected
    assert count(db, Image) == 4
    assert count(db, Face) == summary.faces == len(index)
    with db.session() as session:
        rows = session.execute(select(Location.location, Location.error).where(Location.image_id.is_(None)))
        errors = {location: error for location, error in rows}
    assert {os.path.basename(k): v for k, v in errors.items()} == expected


def test_exact_duplicates_are_stored_once_with_every_location(settings, photos):
    original = next(photos.glob("*.jpg"))
    (photos / "copies").mkdir()
    shutil.copy(original, photos / "copies" / "same-bytes.jpg")
    db, _, summary = ingest(settings, photos)

    assert (summary.images, summary.duplicates) == (4, 1)
    with db.session() as session:
        image = session.scalar(select(Image).join(Location).where(Location.location == str(original)))
        assert sorted(loc.location for loc in image.locations) == sorted(
            [str(original), str(photos / "copies" / "same-bytes.jpg")]
        )
    assert count(db, Image) == 4


def test_rerun_skips_unchanged_files_and_redoes_changed_ones(settings, photos, dev_images):
    db, index, first = ingest(settings, photos)
    faces_before = count(db, Face)
    _, _, again = ingest(settings, photos)
    assert (again.unchanged, again.images, again.duplicates) == (4, 0, 0)
    assert count(db, Face) == faces_before

    # replace one photo with a different person: its old image, faces and media leave, the new one arrives
    target = sorted(photos.iterdir())[0]
    media = MediaStore(settings.media_dir)
    old_sha = hashlib.sha256(target.read_bytes()).hexdigest()
    assert media.thumb_path(old_sha).is_file() and media.crop_path(old_sha, 0).is_file()
    replacement = next(d for d in dev_images if d.identity == "madonna")
    target.write_bytes(replacement.path.read_bytes())
    os.utime(target, ns=(1, 1))
    db, index, third = ingest(settings, photos)
    assert (third.unchanged, third.images) == (3, 1)
    assert count(db, Image) == 4
    assert not media.thumb_path(old_sha).exists() and not media.crop_path(old_sha, 0).exists()
    assert media.thumb_path(hashlib.sha256(target.read_bytes()).hexdigest()).is_file()
    with db.session() as session:
        face_ids = sorted(session.scalars(select(Face.id)))
    assert sorted(index.ids().tolist()) == face_ids


def test_search_finds_the_person_and_writes_an_audit_entry(settings, photos, engine, dev_images):
    db, index, _ = ingest(settings, photos)
    add_accounts(db)
    searcher = Searcher(settings, db, index, engine)
    query = [d for d in dev_images if d.identity == "bill_gates"][3].path.read_bytes()
    result = searcher.search(
        query, actor=investigator(), purpose="source-verification", justification="find bill gates", case_ref="T-1"
    )

    assert result.error is None
    assert len(result.results) >= 2
    assert all("bill_gates" in m.image["location"] for m in result.results[:2])
    distances = [m.distance for m in result.results]
    assert distances == sorted(distances)
    with db.session() as session:
        entry = session.get(AuditEntry, result.audit_id)
        assert entry.action == "search"
        assert (entry.actor, entry.purpose) == ("ivan", "source-verification")
        assert (entry.details["justification"], entry.details["case_ref"]) == ("find bill gates", "T-1")
        assert entry.details["result_count"] == len(result.results)
        assert [face_id for face_id, _ in entry.details["results"]] == [m.face_id for m in result.results]
        assert np.isclose(entry.details["threshold"], settings.match_threshold)


def test_files_over_the_size_limit_are_never_read(tmp_path, monkeypatch):
    from facetrail.ingest import Item

    folder = tmp_path / "big"
    folder.mkdir()
    huge = folder / "video.mp4"
    with huge.open("wb") as handle:  # sparse: 3 GB on paper, nothing on disk
        handle.truncate(3 * 1024**3)
    read = []
    monkeypatch.setattr(Item, "read", lambda self: read.append(self.location) or b"")
    settings = settings_for(tmp_path / "data")
    _, _, summary = ingest(settings, folder)
    assert summary.skipped["too_large"] == 1 and read == []
