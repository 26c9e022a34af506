"""One face model per index: vectors of different models are never stored or searched together,
and a non-default model runs end to end (ingest, index, search)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from facetrail.errors import Refused
from facetrail.index import open_index, rebuild
from facetrail.ingest import walk
from facetrail.search.service import Searcher
from facetrail.store import Database, Face

from .support import add_accounts, folder_ingestor, investigator, photo_of, settings_for

SEARCH = dict(purpose="source-verification", justification="testing", case_ref="T-1")

def _ingest(settings, paths):
    db = Database(settings.db_url)
    folder_ingestor(settings, db, open_index(settings, db), *paths).run(walk(paths))
    return db

@pytest.fixture
def photos(dev_images):
    return [photo_of(dev_images, "madonna", 0), photo_of(dev_images, "madonna", 1), photo_of(dev_images, "bill_gates")]

def test_switching_the_model_without_re_embedding_is_refused_everywhere(tmp_path, db_url, photos):
    dlib = settings_for(tmp_path / "data", database_url=db_url)
    db = _ingest(dlib, photos)
    sface = dlib.model_copy(update={"face_model": "sface_2021dec"})
    for door in (lambda: open_index(sface, db), lambda: rebuild(sface, db), lambda: Searcher.open(sface, db),
                 lambda: _ingest(sface, photos)):
        with pytest.raises(Refused) as refused:
            door()
        assert refused.value.code == "model_mismatch"
    with db.session() as session:
        assert set(session.scalars(select(Face.model))) == {"dlib_resnet_v1"}  # nothing of the other model stored

def test_an_sface_index_finds_the_same_person_with_sface_distances(tmp_path, db_url, photos):
    settings = settings_for(tmp_path / "data", database_url=db_url, face_model="sface_2021dec")
    db = _ingest(settings, photos[1:])
    add_accounts(db)
    with db.session() as session:
        assert set(session.scalars(select(Face.model))) == {"sface_2021dec"}
    searcher = Searcher.open(settings, db)
    assert searcher.engine.model_name == "sface_2021dec"
    result = searcher.search(photos[0].read_bytes(), actor=investigator(), top_k=2, threshold=2.0, **SEARCH)
    first, second = result.results
    assert "madonna" in first.image["location"] and "bill_gates" in second.image["location"]

    assert first.distance < 1.1 < second.distance  # SFace's match threshold lies between them


def test_the_256_d_fusion_is_indexed_and_searched_in_its_own_index(tmp_path, db_url, photos):
    settings = settings_for(tmp_path / "data", database_url=db_url, face_model="fusion_dlib_sface")
    db = _ingest(settings, photos[1:])
    add_accounts(db)
    index = open_index(settings, db)
    assert index.dim == 256 and len(index) == 2 and settings.index_dir.name == "index-fusion_dlib_sface"
    with db.session() as session:
        assert {len(blob) for blob in session.scalars(select(Face.embedding))} == {256 * 4}
    result = Searcher.open(settings, db).search(photos[0].read_bytes(), actor=investigator(), top_k=2,
                                                threshold=2.0, **SEARCH)
    first, second = result.results
    assert "madonna" in first.image["location"] and "bill_gates" in second.image["location"]
    assert first.distance < 0.8 < second.distance  # the fusion's match threshold lies between them
    dlib = settings.model_copy(update={"face_model": "dlib_resnet_v1"})
    with pytest.raises(Refused) as refused:  # its 256-d vectors never meet a 128-d index
        open_index(dlib, db)
    assert refused.value.code == "model_mismatch"


def test_facetrail_models_says_what_the_bands_mean_at_this_indexs_size(tmp_path, db_url, photos):
    from typer.testing import CliRunner

    from facetrail.cli import app
    from facetrail.search.bands import bands_at

    from .support import cli_base

    settings = settings_for(tmp_path / "data", database_url=db_url)
    _ingest(settings, photos)
    result = CliRunner().invoke(app, [*cli_base(settings), "models"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    very_strong = bands_at(3, "dlib_resnet_v1")[0].max_distance
    assert f"At this index's size (3 faces)" in result.output
    assert f"very strong < {very_strong:.3f} (1 in 1,000)" in result.output
