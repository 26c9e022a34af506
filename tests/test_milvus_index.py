"""MilvusIndex against milvus-lite (embedded, in this process, on 127.0.0.1), with FaissIndex
as the exact reference."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import delete, select

from facetrail.index import FaissIndex, sync
from facetrail.store import Database, Face
from facetrail.store.models import Image

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from facetrail.index import milvus_index
from facetrail.index.milvus_index import MilvusIndex

DIM = 128
_names = itertools.count()


@pytest.fixture(scope="module")
def lite_uri(tmp_path_factory) -> Iterator[str]:
    """One milvus-lite data folder for the module; each test takes its own collection in it."""
    uri = str(tmp_path_factory.mktemp("milvus") / "faces.db")
    yield uri
    release(uri)


@pytest.fixture
def index(lite_uri) -> Iterator[MilvusIndex]:
    idx = MilvusIndex(lite_uri, collection=f"faces_{next(_names)}")
    yield idx
    idx.close()


def release(uri: str) -> None:
    """Stop the embedded milvus-lite engine for `uri`, so the next open reads it from disk."""
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(uri)


def random_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.choice(10 * n, size=n, replace=False).astype(np.int64) + 1
    return ids, rng.standard_normal((n, DIM)).astype(np.float32)


def queries_for(vectors: np.ndarray, seed: int = 1) -> np.ndarray:
    """Half near stored vectors (a face seen again), half anywhere."""
    rng = np.random.default_rng(seed)
    near = vectors[rng.choice(len(vectors), 50, replace=False)] + 0.3 * rng.standard_normal((50, DIM))
    return np.vstack([near, rng.standard_normal((50, DIM))]).astype(np.float32)


def exact_reference(tmp_path, ids, vectors) -> FaissIndex:
    reference = FaissIndex(tmp_path / "ref.faiss")
    reference.add(ids, vectors)
    return reference


@pytest.fixture(scope="module")
def flat_and_reference(lite_uri, tmp_path_factory):
    """3,000 random vectors in a FLAT (exact) collection and in FaissIndex, plus 100 queries."""
    ids, vectors = random_data(3000)
    milvus = MilvusIndex(lite_uri, collection="flat_shared", index_type="FLAT")
    milvus.add(ids, vectors)
    reference = exact_reference(tmp_path_factory.mktemp("ref"), ids, vectors)
    yield milvus, reference, queries_for(vectors)
    milvus.close()


def assert_same_results(milvus, reference, queries, k=10) -> None:
    got_d, got_i = milvus.search(queries, k)
    want_d, want_i = reference.search(queries, k)
    assert got_d.dtype == np.float32 and got_i.dtype == np.int64
    assert got_i.shape == got_d.shape == (len(np.atleast_2d(queries)), k)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-4, atol=1e-4)


def test_flat_search_matches_exact_faiss_before_and_after_save(flat_and_reference):
    milvus, reference, queries = flat_and_reference
    assert milvus.kind == "milvus" and milvus.index_type == "FLAT"
    assert_same_results(milvus, reference, queries)  # growing data, not yet flushed
    milvus.save()
    assert_same_results(milvus, reference, queries)  # sealed segment, indexed
    assert_same_results(milvus, reference, queries[:1], k=1)
    assert_same_results(milvus, reference, queries[0], k=60)  # one row as a 1-d vector; pool > 50


def test_hnsw_reranks_exactly_with_high_recall(lite_uri, tmp_path):
    ids, vectors = random_data(3000, seed=2)
    queries = queries_for(vectors, seed=3)
    milvus = MilvusIndex(lite_uri, collection=f"hnsw_{next(_names)}", index_type="HNSW")
    milvus.add(ids, vectors)
    milvus.save()  # seal the segment so the HNSW graph is built and searched
    got_d, got_i = milvus.search(queries, 10)
    _, want_i = exact_reference(tmp_path, ids, vectors).search(queries, 10)
    # Random 128-d data is HNSW's worst case; face descriptors cluster and do better.
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got_i, want_i)])
    assert recall >= 0.98
    np.testing.assert_array_equal(got_i[:50, 0], want_i[:50, 0])  # a stored face seen again comes first
    assert np.all(np.diff(got_d, axis=1) >= 0)
    # Distances are exact Euclidean ones (re-ranked from stored vectors), not squared or approximate.
    position = {int(i): p for p, i in enumerate(ids)}
    for q, (row_d, row_i) in enumerate(zip(got_d, got_i)):
        stored = vectors[[position[int(i)] for i in row_i]]
        np.testing.assert_allclose(row_d, np.linalg.norm(stored - queries[q], axis=1), rtol=1e-5)
    milvus.close()


def test_empty_index_pads(index):
    assert len(index) == 0
    held = index.ids()
    assert held.dtype == np.int64 and held.shape == (0,)
    distances, ids = index.search(np.zeros((3, DIM), np.float32), 5)
    assert distances.shape == ids.shape == (3, 5)
    assert distances.dtype == np.float32 and ids.dtype == np.int64
    assert np.all(ids == -1) and np.all(np.isinf(distances))
    assert index.remove(np.array([1, 2], np.int64)) == 0
    assert index.remove(np.array([], np.int64)) == 0


def test_fewer_faces_than_k_pad_the_tail(index):
    ids, vectors = random_data(3, seed=4)
    index.add(ids, vectors)
    distances, found = index.search(vectors[0], 5)
    assert found[0, 0] == ids[0] and distances[0, 0] == pytest.approx(0, abs=1e-6)
    assert sorted(found[0, :3]) == sorted(ids) and np.all(np.isfinite(distances[0, :3]))
    assert list(found[0, 3:]) == [-1, -1] and np.all(np.isinf(distances[0, 3:]))


def test_remove_takes_effect_at_once_and_counts_what_was_present(index):
    ids, vectors = random_data(500, seed=5)
    index.add(ids, vectors)
    assert len(index) == 500
    gone = ids[:20]
    absent = np.array([-5, 10**12], np.int64)
    assert index.remove(np.concatenate([gone, gone[:3], absent])) == 20
    assert len(index) == 480
    assert set(index.ids().tolist()) == set(ids[20:].tolist())
    _, found = index.search(vectors[:20], 10)  # each removed face's own vector: it must not come back
    assert not np.isin(found, gone).any() and np.all(found >= 0)
    assert index.remove(gone) == 0
    index.save()  # and once the rows are sealed in a segment
    assert index.remove(ids[20:30]) == 10
    assert len(index) == 470
    _, found = index.search(vectors[20:30], 1)
    assert not np.isin(found, ids[20:30]).any()


def test_ids_and_len_follow_adds_and_removes(index, monkeypatch):
    ids, vectors = random_data(2500, seed=6)  # more than one upsert batch
    index.add(ids[:1200], vectors[:1200])
    assert len(index) == 1200
    index.add(ids[1200:], vectors[1200:])
    held = index.ids()
    assert held.dtype == np.int64 and np.array_equal(np.sort(held), np.sort(ids))
    assert len(index) == 2500
    index._local = False  # the query-iterator path that Milvus servers take, in 1,000-id pages
    monkeypatch.setattr(milvus_index, "MAX_LIMIT", 1000)
    paged = index.ids()
    index._local = True
    assert paged.dtype == np.int64 and np.array_equal(np.sort(paged), np.sort(ids))
    index.add(ids[:10], vectors[10:20])  # adding an id again replaces its vector, never duplicates it
    assert len(index) == 2500
    _, found = index.search(vectors[10], 1)
    assert found[0, 0] in (ids[0], ids[10])
    index.add(np.array([], np.int64), np.empty((0, DIM), np.float32))
    assert len(index) == 2500
    index.reset()  # what a rebuild starts from
    assert len(index) == 0 and len(index.ids()) == 0
    index.add(ids[:5], vectors[:5])
    assert sorted(index.search(vectors[0], 10)[1][0, :5]) == sorted(ids[:5])


def test_reopening_the_db_file_keeps_the_data(tmp_path):
    uri = str(tmp_path / "data" / "vectors.db")  # parent folder created on demand
    ids, vectors = random_data(400, seed=7)
    first = MilvusIndex(uri)
    first.add(ids, vectors)
    first.remove(ids[:5])
    first.save()
    first.add(ids[:2], vectors[:2])  # written after the flush: in milvus-lite's log only
    before = first.search(vectors[:20], 10)
    first.close()
    release(uri)

    again = MilvusIndex(uri)
    assert again.index_type == "FLAT"
    assert len(again) == 397
    assert set(again.ids().tolist()) == set(ids.tolist()) - set(ids[2:5].tolist())
    after = again.search(vectors[:20], 10)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], rtol=1e-6)
    with pytest.raises(ValueError, match="128-d"):
        MilvusIndex(uri, dim=64)
    again.close()
    release(uri)


def _add_faces(db: Database, vectors: np.ndarray, first_idx: int = 0) -> None:
    now = datetime.now(UTC)
    with db.session() as session, session.begin():
        image = session.scalar(select(Image))
        if image is None:
            image = Image(
                sha256="a" * 64, bytes=1, width=1, height=1, format="PNG", first_seen=now, last_seen=now
            )
            session.add(image)
        for i, vector in enumerate(vectors, first_idx):
            session.add(
                Face(
                    image=image,
                    idx=i,
                    left=0,
                    top=0,
                    right=1,
                    bottom=1,
                    score=1.0,
                    detector="test",
                    landmarks=[],
                    model="test",
                    embedding=vector.astype(np.float32).tobytes(),
                )
            )


def test_sync_brings_milvus_in_step_with_the_database(index, tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'facetrail.db'}")  # SQLite in tmp_path: no server
    rng = np.random.default_rng(8)
    _add_faces(db, rng.standard_normal((30, DIM)))
    reference = FaissIndex(tmp_path / "faces.faiss")
    assert sync(index, db) == (30, 0)
    assert sync(reference, db) == (30, 0)
    with db.session() as session, session.begin():
        gone = session.scalars(select(Face.id).order_by(Face.id).limit(4)).all()
        session.execute(delete(Face).where(Face.id.in_(gone)))
    _add_faces(db, rng.standard_normal((6, DIM)), first_idx=30)
    assert sync(index, db) == (6, 4)
    assert sync(reference, db) == (6, 4)
    assert sync(index, db) == (0, 0)
    with db.session() as session:
        db_ids = sorted(session.scalars(select(Face.id)))
    assert sorted(index.ids().tolist()) == db_ids and len(index) == 32
    queries = rng.standard_normal((5, DIM)).astype(np.float32)
    assert_same_results(index, reference, queries, k=8)
    db.close()
