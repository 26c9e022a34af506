"""Each result says what its distance means at the index's current size (issue 16 item 3): how
often a search for someone not in the index would show a face this close, from the model's fitted
different-person tail, in the JSON the API, CLI and page share."""

from __future__ import annotations

from facetrail.index import open_index
from facetrail.search import Searcher

from .support import investigator, photo_of


def test_results_say_what_their_distance_means_at_this_index_size(dev_index, engine, dev_images):
    index = open_index(dev_index.settings, dev_index.db)
    searcher = Searcher(dev_index.settings, dev_index.db, index, engine)
    result = searcher.search(photo_of(dev_images, "madonna").read_bytes(), actor=investigator(),
                             purpose="source-verification", justification="bands", case_ref="T-1", top_k=20)
    assert result.results
    size = f"in an index of {len(index):,} faces"
    assert all(m.band_meaning.startswith(size) for m in result.results)
    nearest, farthest = result.results[0], result.results[-1]
    assert "practically never" in nearest.band_meaning or "1 search in" in nearest.band_meaning
    assert result.to_dict()["results"][0]["band_meaning"] == nearest.band_meaning
    assert farthest.distance >= nearest.distance


def test_the_threshold_in_use_is_the_active_models_unless_set(tmp_path, monkeypatch):
    """Search, subject access and repeat-subject checks read the active model's calibrated match
    threshold (SFace's distances live on another scale than dlib's); an explicit setting wins."""
    from facetrail.config import Settings
    from facetrail.faces.registry import model_info
    from facetrail.store import Database

    def threshold(**extra) -> float:
        settings = Settings(data_dir=tmp_path, **extra)
        return Searcher(settings, Database(settings.db_url), None, None).match_threshold

    assert threshold() == model_info("dlib_resnet_v1").calibration.match_threshold == 0.6
    sface = model_info("sface_2021dec").calibration.match_threshold
    assert threshold(face_model="sface_2021dec") == sface != 0.6
    assert threshold(face_model="sface_2021dec", match_threshold=1.0) == 1.0


def test_the_default_search_threshold_narrows_as_the_index_grows(dev_index, engine, dev_images):
    """The default threshold follows the bands: never wider than the model's match threshold, and
    at any size no wider than where half the searches for someone absent would show a stranger
    (FPIR 1/2); an explicit FACETRAIL_MATCH_THRESHOLD stays as set."""
    import pytest

    from facetrail.faces.registry import model_info
    from facetrail.search.bands import THRESHOLD_FPIR, fpir, threshold_at

    tail = model_info("dlib_resnet_v1").calibration.tail
    assert threshold_at(100, "dlib_resnet_v1", 0.6) == 0.6
    million = threshold_at(10**6, "dlib_resnet_v1", 0.6)
    assert 0.4 < million < 0.45 and fpir(million, 10**6, tail) == pytest.approx(THRESHOLD_FPIR, rel=1e-3)
    assert threshold_at(10**7, "dlib_resnet_v1", 0.6) < million

    index = open_index(dev_index.settings, dev_index.db)
    searcher = Searcher(dev_index.settings, dev_index.db, index, engine)
    assert searcher.search_threshold == min(0.6, threshold_at(len(index), "dlib_resnet_v1", 1.0))
    result = searcher.search(photo_of(dev_images, "madonna").read_bytes(), actor=investigator(),
                             purpose="source-verification", justification="bands", case_ref="T-1")
    assert all(m.distance <= searcher.search_threshold for m in result.results)
    with dev_index.db.session() as session:
        from facetrail.store import AuditEntry

        assert session.get(AuditEntry, result.audit_id).details["threshold"] == searcher.search_threshold
    explicit = dev_index.settings.model_copy(update={"match_threshold": 0.6})
    explicit.model_fields_set.add("match_threshold")
    assert Searcher(explicit, dev_index.db, index, engine).search_threshold == 0.6
