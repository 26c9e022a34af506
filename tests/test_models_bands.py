"""Bands that mean the same at every gallery size: the false-positive identification rate of a
distance, from each model's fitted impostor tail, checked against absent-person searches on
the dev set."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from facetrail.faces.registry import MODELS, model_info
from facetrail.search.bands import bands_at, distance_at, fpir, meaning
from facetrail.store import Face, Location


@pytest.mark.parametrize("model", list(MODELS))
def test_the_same_band_needs_a_closer_face_in_a_larger_gallery(model):
    tail = model_info(model).calibration.tail
    small, large = bands_at(1_000, model), bands_at(10_000_000, model)
    assert all(l.max_distance < s.max_distance for s, l in zip(small[:-1], large[:-1]))
    assert [b.name for b in small] == ["very strong", "strong", "possible", "weak"]
    for size in (1_000, 1_000_000, 10_000_000):
        for rate in (1e-3, 1e-2, 1e-1):
            assert fpir(distance_at(rate, size, tail), size, tail) == pytest.approx(rate, rel=1e-6)


def test_dlibs_strong_band_of_today_is_not_strong_in_a_million_faces():
    tail = model_info("dlib_resnet_v1").calibration.tail
    assert fpir(0.45, 1_000, tail) < 0.01  # today's "strong" is rare for a stranger among 1,000
    assert fpir(0.45, 1_000_000, tail) > 0.5  # and common among a million
    assert "1 search in" in meaning(0.45, 1_000) and "most searches" in meaning(0.45, 1_000_000)


def test_absent_person_searches_on_the_dev_set_find_a_stranger_as_often_as_the_fit_says(dev_index, dev_images):
    """Each person in turn is left out of the gallery; each of their photos searches the rest. The
    share of searches whose nearest (wrong) face is under the distance at FPIR 0.1 should be 0.1."""
    identity = {str(d.path): d.identity for d in dev_images if d.labelled}
    with dev_index.db.session() as session:
        rows = session.execute(select(Location.location, Face.embedding)
                               .join(Face, Face.image_id == Location.image_id).where(Face.idx == 0)).all()
    who = np.array([identity[loc] for loc, _ in rows if loc in identity])
    vectors = np.stack([np.frombuffer(e, np.float32) for loc, e in rows if loc in identity])
    tail = model_info("dlib_resnet_v1").calibration.tail
    hits = searches = 0
    for person in set(who):
        gallery = vectors[who != person]
        limit = distance_at(0.1, len(gallery), tail)
        for probe in vectors[who == person]:
            searches += 1
            hits += np.linalg.norm(gallery - probe, axis=1).min() < limit
    assert searches > 200
    assert 0.03 <= hits / searches <= 0.25, hits / searches
