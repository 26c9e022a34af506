"""CompressedIndex: exact results after re-ranking, incremental add, immediate remove, save/reopen."""

from __future__ import annotations

import numpy as np
import pytest

from facetrail.index import FaissStore
from facetrail.index.compressed import CompressedIndex

from .support import faces

DIM = 128


def exact(gallery: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int):
    d = (queries**2).sum(1)[:, None] - 2 * queries @ gallery.T + (gallery**2).sum(1)[None, :]
    order = np.argsort(d, axis=1)[:, :k]
    return np.sqrt(np.maximum(np.take_along_axis(d, order, 1), 0)), ids[order]


@pytest.fixture(scope="module")
def data():
    x = faces(50_000, seed=1)
    return x[:-100], x[-100:]  # gallery, queries (new faces of gallery identities)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    gallery, _ = data
    index = CompressedIndex(tmp_path_factory.mktemp("ci") / "index")
    index.add(np.arange(len(gallery), dtype=np.int64) + 1000, gallery)
    index.train()
    return index


def test_untrained_is_exact(tmp_path, data):
    gallery, queries = data
    index = CompressedIndex(tmp_path / "small")
    ids = np.arange(5000, dtype=np.int64) * 7
    index.add(ids, gallery[:5000])
    assert not index.trained and index.kind.endswith("exact")
    d, i = index.search(queries[:20], 10)
    ed, ei = exact(gallery[:5000], ids, queries[:20], 10)
    assert (i == ei).all()
    np.testing.assert_allclose(d, ed, rtol=1e-4, atol=1e-5)


def test_matches_exact_search(trained, data):
    gallery, queries = data
    ids = np.arange(len(gallery), dtype=np.int64) + 1000
    assert trained.trained and trained.kind.startswith("faiss-ivf")
    d, i = trained.search(queries, 10)
    _, ei = exact(gallery, ids, queries, 10)
    recall = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(i, ei)])
    assert recall >= 0.99
    # distances are exact ones for the ids returned, ascending
    true = np.linalg.norm(gallery[i - 1000] - queries[:, None, :], axis=2)
    np.testing.assert_allclose(d, true, rtol=1e-4, atol=1e-5)
    assert (np.diff(d, axis=1) >= 0).all()
    status = trained.status()
    assert status["trained"] and status["faces"] == len(gallery) and status["index_bytes_per_face"] < 100


def test_add_after_training_and_remove_immediately(trained, data):
    _, queries = data
    new_ids = np.array([10**9 + 1, 10**9 + 2], np.int64)
    trained.add(new_ids, queries[:2])
    d, i = trained.search(queries[:2], 5)
    assert i[0, 0] == new_ids[0] and i[1, 0] == new_ids[1]
    assert d[0, 0] == pytest.approx(0, abs=1e-5)
    before = len(trained)
    victim = i[0, :3].copy()  # the new face and two gallery faces
    assert trained.remove(np.concatenate([victim, [123456789]])) == 3
    assert len(trained) == before - 3
    _, i2 = trained.search(queries[:1], 10)
    assert not np.isin(victim, i2).any()
    assert not np.isin(victim, trained.ids()).any()
    assert trained.remove(victim) == 0
    # removed ids can come back
    trained.add(victim[:1], queries[:1])
    assert trained.search(queries[:1], 1)[1][0, 0] == victim[0]


def test_save_reopen_round_trip(tmp_path, data):
    gallery, queries = data
    path = tmp_path / "index"
    index = CompressedIndex(path)
    ids = np.arange(20_000, dtype=np.int64)
    index.add(ids, gallery[:20_000])
    index.train()
    index.remove(ids[:10])
    index.save()
    index.add(np.array([99_999], np.int64), queries[:1])  # not saved: gone after reopening
    expected = index.search(queries[1:30], 10)
    index.close()

    again = CompressedIndex(path)
    assert again.trained and len(again) == 20_000 - 10
    assert 99_999 not in again.ids() and not np.isin(ids[:10], again.ids()).any()
    got = again.search(queries[1:30], 10)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_allclose(got[0], expected[0])
    again.add(np.array([99_999], np.int64), queries[:1])
    assert again.search(queries[:1], 1)[1][0, 0] == 99_999
    again.save()
    assert sorted(p.name for p in path.iterdir()) == [
        "CURRENT",
        "index-2.faiss",
        "state-2.npz",
        "vectors.f32",
    ]


def test_auto_train_at_limit(tmp_path, data):
    """CompressedIndex trains only when told: the store that owns it decides when (training.py)."""
    gallery, _ = data
    alone = CompressedIndex(tmp_path / "alone")
    alone.add(np.arange(4000, dtype=np.int64), gallery[:4000])
    assert not alone.trained
    index = FaissStore(tmp_path / "auto", exact_limit=3000)
    index.add(np.arange(2000, dtype=np.int64), gallery[:2000])
    assert not index.trained
    index.add(np.arange(2000, 4000, dtype=np.int64), gallery[2000:4000])
    assert index.trained and len(index) == 4000
    assert index.search(gallery[:3], 1)[1][:, 0].tolist() == [0, 1, 2]
    index.close()


def test_exact_mode_remove_and_padding(tmp_path, data):
    gallery, _ = data
    index = CompressedIndex(tmp_path / "tiny")
    index.add(np.array([5, 6, 7], np.int64), gallery[:3])
    assert index.remove(np.array([6, 8], np.int64)) == 1
    d, i = index.search(gallery[1], 4)
    assert sorted(i[0, :2].tolist()) == [5, 7] and i[0, 2:].tolist() == [-1, -1]
    assert np.isinf(d[0, 2:]).all()
