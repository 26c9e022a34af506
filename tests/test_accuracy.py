"""Face finding and matching quality on the real, labelled dev photos."""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest
from sqlalchemy import select

from facetrail.index import open_index
from facetrail.store import Face, Location


@pytest.fixture(scope="module")
def faces_by_path(dev_index):
    """location -> list of (face id, embedding), from the shared dev index."""
    found = defaultdict(list)
    with dev_index.db.session() as session:
        rows = session.execute(
            select(Location.location, Face.id, Face.embedding).join(Face, Face.image_id == Location.image_id)
        )
        for location, face_id, blob in rows:
            found[location].append((face_id, np.frombuffer(blob, np.float32)))
    return found


def test_faces_found_in_at_least_97_percent_of_labelled_images(dev_images, faces_by_path):
    labelled = [d for d in dev_images if d.labelled]
    missed = [str(d.path) for d in labelled if not faces_by_path.get(str(d.path))]
    rate = 1 - len(missed) / len(labelled)
    print(f"faces found in {rate:.1%} of {len(labelled)} labelled images; missed: {missed}")
    assert rate >= 0.97


def test_no_face_in_at_least_90_percent_of_distractors(dev_images, faces_by_path):
    empty = [d for d in dev_images if d.identity == "none"]
    false = [str(d.path) for d in empty if faces_by_path.get(str(d.path))]
    assert 1 - len(false) / len(empty) >= 0.90, false


def _main_face(faces):
    return faces[0]  # faces are stored largest first


def test_same_person_pairs_are_closer_than_different_person_pairs(dev_images, faces_by_path):
    vectors = [
        (d.identity, _main_face(faces_by_path[str(d.path)])[1])
        for d in dev_images
        if d.labelled and faces_by_path.get(str(d.path))
    ]
    same, different = [], []
    for (a, va), (b, vb) in itertools.combinations(vectors, 2):
        (same if a == b else different).append(float(np.linalg.norm(va - vb)))
    same, different = np.array(same), np.array(different)
    # probability that a random same-person pair is closer than a random different-person pair (ROC AUC)
    auc = (same[:, None] < different[None, :]).mean()
    print(f"same median {np.median(same):.3f}, different median {np.median(different):.3f}, AUC {auc:.4f}")
    assert np.median(same) < 0.6 < np.median(different)
    assert auc >= 0.97


def test_rank_one_identity_for_at_least_95_percent_of_queries(dev_index, dev_images, faces_by_path):
    index = open_index(dev_index.settings, dev_index.db)
    identity_of_face = {}
    for d in dev_images:
        for face_id, _ in faces_by_path.get(str(d.path), []):
            identity_of_face[face_id] = d.identity
    counts = defaultdict(int)
    for d in dev_images:
        if d.labelled:
            counts[d.identity] += 1
    hits = total = 0
    wrong = []
    for d in dev_images:
        faces = faces_by_path.get(str(d.path))
        if not d.labelled or not faces or counts[d.identity] < 2:
            continue
        own_id, vector = _main_face(faces)
        own = {face_id for face_id, _ in faces}
        _, ids = index.search(vector, 10)
        ranked = [int(i) for i in ids[0] if i >= 0 and int(i) not in own]
        total += 1
        if ranked and identity_of_face.get(ranked[0]) == d.identity:
            hits += 1
        else:
            wrong.append((d.path.name, d.identity, identity_of_face.get(ranked[0]) if ranked else None))
    print(f"rank-1: {hits}/{total} = {hits / total:.1%}; wrong: {wrong}")
    assert hits / total >= 0.95
