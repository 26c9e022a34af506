"""Index selection (facetrail.index): exact FAISS while small, compressed beyond exact_limit with
background training, immediate deletions, reopening, the old flat file, milvus-lite by
vector_uri, index_status and `facetrail index-status`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime

import numpy as np
import pytest
from sqlalchemy import delete, select
from typer.testing import CliRunner

from facetrail.index import (
    FaissIndex,
    FaissStore,
    follow_once,
    index_path,
    index_status,
    load_index,
    open_index,
    rebuild,
    sync,
)
from facetrail.index import compressed
from facetrail.store import Database, Face, Image

from .support import faces, settings_for

DIM = 128
LIMIT = 2000  # a tiny exact_limit: the compressed regime at a few thousand faces


def add_faces(db: Database, vectors: np.ndarray) -> np.ndarray:
    """Store faces (one new image); returns their ids."""
    now = datetime.now(UTC)
    with db.session() as session, session.begin():
        count = len(session.scalars(select(Image.id)).all())
        image = Image(sha256=f"{count:064x}", bytes=1, width=1, height=1, format="PNG", first_seen=now, last_seen=now)
        session.add(image)
        rows = [
            Face(image=image, idx=i, left=0, top=0, right=1, bottom=1, score=1.0, detector="test",
                 landmarks=[], model="dlib_resnet_v1", embedding=np.asarray(v, np.float32).tobytes())
            for i, v in enumerate(vectors)
        ]
        session.add_all(rows)
        session.flush()
        return np.array([r.id for r in rows], np.int64)


def ingest(db: Database, index, vectors: np.ndarray) -> np.ndarray:
    """What the ingest pipeline does: commit the faces, then add them to the index."""
    ids = add_faces(db, vectors)
    index.add(ids, vectors)
    return ids


def brute_force(gallery: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int):
    d = np.linalg.norm(gallery[None, :, :] - queries[:, None, :], axis=2)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), ids[order]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.fixture
def setup(tmp_path):
    """Settings with a tiny exact limit and an empty SQLite database in tmp_path."""
    settings = settings_for(tmp_path / "data", exact_limit=LIMIT)
    db = Database(settings.db_url)
    yield settings, db
    db.close()


@pytest.fixture(scope="module")
def data():
    x = faces(5200, seed=11)
    return x[:5000], x[5000:]  # gallery, queries (new faces of gallery identities)


def test_small_gallery_is_exact_and_equal_to_brute_force(setup, data):
    settings, db = setup
    gallery, queries = data
    ids = add_faces(db, gallery[:1500])
    index = open_index(settings, db)
    assert isinstance(index, FaissStore) and index.kind == "faiss-exact" and index.state == "exact"
    assert len(index) == 1500 and not index.needs_training
    distances, found = index.search(queries, 10)
    true_d, true_i = brute_force(gallery[:1500], ids, queries, 10)
    np.testing.assert_array_equal(found, true_i)
    np.testing.assert_allclose(distances, true_d, rtol=1e-4, atol=1e-5)
    assert index_path(settings) == settings.index_dir
    assert (settings.index_dir / "vectors.f32").stat().st_size == 1500 * DIM * 4
    index.close()


def test_following_the_database_reads_only_new_faces_and_resyncs_after_a_deletion(setup, data, monkeypatch):
    """The web app follows ingests made by other processes: added faces are read by id, above the
    highest seen; a deletion elsewhere (count lower than expected) brings a whole sync."""
    import facetrail.index as index_module

    settings, db = setup
    gallery, queries = data
    first = add_faces(db, gallery[:300])
    index = open_index(settings, db)
    syncs = []
    real_sync = index_module.sync
    monkeypatch.setattr(index_module, "sync", lambda *a, **k: syncs.append(1) or real_sync(*a, **k))
    seen = follow_once(index, db, None)  # the first round knows nothing: one whole sync
    assert seen == (300, int(first.max())) and len(syncs) == 1
    assert follow_once(index, db, seen) == seen and len(syncs) == 1  # nothing changed: nothing read
    more = add_faces(db, gallery[300:450])  # another process ingests
    seen = follow_once(index, db, seen)
    assert len(syncs) == 1 and len(index) == 450 and seen == (450, int(more.max()))
    _, found = index.search(gallery[400:401], 1)
    assert found[0][0] == more[100]
    with db.session() as session, session.begin():  # another process deletes one and adds some
        session.execute(delete(Face).where(Face.id == int(first[0])))
    newest = add_faces(db, gallery[450:460])
    seen = follow_once(index, db, seen)
    assert len(syncs) == 2 and len(index) == 459 and int(first[0]) not in set(index.ids().tolist())
    assert set(newest.tolist()) <= set(index.ids().tolist()) and seen == (459, int(newest.max()))
    index.close()


def test_crossing_the_limit_trains_in_the_background_while_searches_stay_exact(setup, data, monkeypatch):
    settings, db = setup
    gallery, queries = data
    ids = add_faces(db, gallery[:1800])
    index = open_index(settings, db, background=True)
    assert index.state == "exact"

    release = threading.Event()
    started = threading.Event()
    train = compressed.CompressedIndex.train

    def held_train(self, *args, **kwargs):  # hold the background training until the test lets it go
        started.set()
        assert release.wait(30)
        return train(self, *args, **kwargs)

    monkeypatch.setattr(compressed.CompressedIndex, "train", held_train)
    ids = np.concatenate([ids, ingest(db, index, gallery[1800:2600])])  # crosses 2000
    assert started.wait(10), "no training started"
    assert index.training and index.state == "training" and index.kind == "faiss-exact"

    # during the training: exact answers, adds and removals applied at once
    distances, found = index.search(queries, 10)
    true_d, true_i = brute_force(gallery[:2600], ids, queries, 10)
    np.testing.assert_array_equal(found, true_i)
    late = ingest(db, index, gallery[2600:3000])  # added after the snapshot: encoded at the swap
    ids = np.concatenate([ids, late])
    gone = np.unique(np.concatenate([true_i[:5, 0], late[:5]]))  # nearest neighbours, and faces just added
    with db.session() as session, session.begin():
        session.execute(delete(Face).where(Face.id.in_(gone.tolist())))
    assert index.remove(gone) == len(gone)
    assert not np.isin(index.search(queries, 10)[1], gone).any()
    assert not np.isin(index.search(gallery[2600:2605], 1)[1], gone).any()
    assert index.status()["training"] == "training"

    release.set()
    assert index.wait(60)
    assert index.state == "trained" and index.kind.startswith("faiss-ivf64-") and index.trainings == 1
    assert index.status()["in_lists"] == 2600 + 395  # the snapshot's rows, and the rows added meanwhile
    keep = ~np.isin(ids, gone)
    live_ids, live = ids[keep], gallery[:3000][keep]
    distances, found = index.search(queries, 10)
    true_d, true_i = brute_force(live, live_ids, queries, 10)
    assert recall(found, true_i) >= 0.99
    assert not np.isin(found, gone).any()
    hit = found == true_i
    np.testing.assert_allclose(distances[hit], true_d[hit], rtol=1e-4)  # re-ranked: exact distances
    # faces added during the training are found by their own vector
    assert (index.search(gallery[2605:2700], 1)[1][:, 0] == late[5:100]).all()
    assert index_status(settings, db, index)["in_step"]
    index.close()


def test_a_face_removed_right_after_it_was_added_is_never_returned(setup, data):
    settings, db = setup
    gallery, queries = data
    add_faces(db, gallery[:2500])
    index = open_index(settings, db)  # above the limit, no thread: trained before returning
    assert index.state == "trained" and index.trainings == 1
    for vector in queries[:20]:
        new = ingest(db, index, vector[None])
        assert index.search(vector, 1)[1][0, 0] == new[0]
        with db.session() as session, session.begin():
            session.execute(delete(Face).where(Face.id == int(new[0])))
        assert index.remove(new) == 1
        assert new[0] not in index.search(vector, 50)[1]
    assert index.trainings == 1  # no retraining happened: the id filter did it
    index.close()


def test_growth_retrains_and_shrinking_below_half_the_limit_goes_back_to_exact(setup, data):
    settings, db = setup
    gallery, _ = data
    add_faces(db, gallery[:2500])
    index = open_index(settings, db, background=True)
    assert index.wait(60) and index.state == "trained"
    first = index.status()["nlist"]
    ingest(db, index, gallery[2500:5000])  # the list count default_nlist picks doubles: stale
    assert index.wait(60) and index.trainings == 2
    assert index.status()["nlist"] == 2 * first and not index.needs_training
    index.close()

    with db.session() as session, session.begin():
        session.execute(delete(Face).where(Face.id > 900))
    index = open_index(settings, db)
    assert len(index) == 900 and index.state == "exact" and index.kind == "faiss-exact"
    index.close()


def test_searching_threads_while_ingesting_through_two_trainings(setup, data):
    settings, db = setup
    gallery, queries = data
    ids = add_faces(db, gallery[:1500])
    index = open_index(settings, db, background=True)
    errors: list[BaseException] = []
    stop = threading.Event()
    searches = [0]

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                distances, found = index.search(queries[rng.integers(0, len(queries), 4)], 10)
                assert (found >= 0).all() and np.isfinite(distances).all()
                assert (np.diff(distances, axis=1) >= 0).all()
                searches[0] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(2)]
    for thread in threads:
        thread.start()
    gone: list[int] = []
    try:
        for start in range(1500, 5000, 250):
            chunk = ingest(db, index, gallery[start : start + 250])
            ids = np.concatenate([ids, chunk])
            dropped = chunk[:3]
            with db.session() as session, session.begin():
                session.execute(delete(Face).where(Face.id.in_(dropped.tolist())))
            index.remove(dropped)
            gone += dropped.tolist()
            assert not np.isin(index.search(gallery[start : start + 3], 10)[1], gone).any()
        assert index.wait(60)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors, errors[0]
    assert searches[0] > 10 and index.trainings >= 2 and index.state == "trained"
    assert index_status(settings, db, index)["in_step"]
    keep = ~np.isin(ids, gone)
    _, truth = brute_force(gallery[:5000][keep], ids[keep], queries, 10)
    assert recall(index.search(queries, 10)[1], truth) >= 0.95
    index.close()


def test_a_failed_background_training_leaves_exact_search_and_is_reported(setup, data, monkeypatch):
    settings, db = setup
    gallery, queries = data
    ids = add_faces(db, gallery[:2100])

    def broken(self, *args, **kwargs):
        raise MemoryError("no room")

    with monkeypatch.context() as patch:
        patch.setattr(compressed.CompressedIndex, "train", broken)
        index = open_index(settings, db, background=True)
        assert index.wait(30)
    status = index.status()
    assert status["training"] == "exact" and "MemoryError" in status["training_error"]
    np.testing.assert_array_equal(index.search(queries, 10)[1], brute_force(gallery[:2100], ids, queries, 10)[1])
    ingest(db, index, gallery[2100:2110])  # under 10 % more: no new attempt
    assert not index.training and index.trainings == 0
    index.train_now()  # explicit: trains in this thread
    assert index.state == "trained" and index.status()["training_error"] is None
    index.close()


def test_reopening_gives_the_same_kind_and_answers(setup, data):
    settings, db = setup
    gallery, queries = data
    add_faces(db, gallery[:2500])
    index = open_index(settings, db)
    gone = index.ids()[:10]
    with db.session() as session, session.begin():
        session.execute(delete(Face).where(Face.id.in_(gone.tolist())))
    index.remove(gone)
    index.save()
    kind, before = index.kind, index.search(queries, 10)
    index.close()

    again = open_index(settings, db)
    assert again is not index and again.kind == kind and again.trainings == 0  # loaded, not retrained
    after = again.search(queries, 10)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], rtol=1e-6)
    assert load_index(settings) is again  # one store per folder in a process
    again.close()


def test_a_flat_index_of_an_earlier_version_is_replaced(setup, data):
    settings, db = setup
    gallery, queries = data
    ids = add_faces(db, gallery[:300])
    old = FaissIndex(settings.index_dir / "faces.faiss")
    old.add(ids[:100], gallery[:100])
    old.add(np.array([999_999]), np.zeros((1, DIM), np.float32))  # not in the database
    old.save()
    index = open_index(settings, db)
    assert not (settings.index_dir / "faces.faiss").exists()
    assert sorted(index.ids().tolist()) == sorted(ids.tolist())
    np.testing.assert_array_equal(index.search(queries, 5)[1], brute_force(gallery[:300], ids, queries, 5)[1])
    index.close()


def test_another_process_gets_a_read_only_view(setup, data):
    settings, db = setup
    gallery, queries = data
    ids = add_faces(db, gallery[:500])
    owner = open_index(settings, db)
    # a second store on the folder: what another process gets (the flock is per open file)
    guest = FaissStore(settings.index_dir, exact_limit=LIMIT)
    assert owner.owner and not guest.owner and "read-only guest" in guest.status()["mode"]
    file_size = (settings.index_dir / "vectors.f32").stat().st_size
    more = add_faces(db, gallery[500:600])
    assert sync(guest, db) == (100, 0)  # into its memory only
    guest.remove(ids[:3])
    guest.save()
    assert (settings.index_dir / "vectors.f32").stat().st_size == file_size
    live = np.concatenate([ids[3:], more])
    np.testing.assert_array_equal(
        guest.search(queries, 10)[1], brute_force(gallery[3:600], live, queries, 10)[1]
    )
    assert len(owner) == 500  # the owner is untouched
    with pytest.raises(RuntimeError, match="another process"):
        guest.reset()
    guest.close()

    script = (
        "import sys; from facetrail.index import FaissStore; s = FaissStore(sys.argv[1]); "
        "print(s.owner, len(s), len(s.ids()))"
    )
    other = subprocess.run([sys.executable, "-c", script, str(settings.index_dir)],
                           capture_output=True, text=True, timeout=120)
    assert other.stdout.split() == ["False", "500", "500"], other.stderr  # a guest in another process
    owner.close()  # releases the folder
    other = subprocess.run([sys.executable, "-c", script, str(settings.index_dir)],
                           capture_output=True, text=True, timeout=120)
    assert other.stdout.split() == ["True", "500", "500"], other.stderr


def test_rebuild_starts_over_from_the_database(setup, data):
    settings, db = setup
    gallery, queries = data
    ids = add_faces(db, gallery[:2200])
    index = open_index(settings, db)
    index.add(np.array([777_777]), np.zeros((1, DIM), np.float32))  # an id the database lacks
    index.save()
    seen = []
    rebuilt = rebuild(settings, db, seen.append)
    assert rebuilt is index and sum(seen) == 2200
    assert rebuilt.state == "trained" and sorted(rebuilt.ids().tolist()) == sorted(ids.tolist())
    assert index_status(settings, db)["in_step"]
    rebuilt.close()


def test_index_status_fields(setup, data):
    settings, db = setup
    gallery, _ = data
    add_faces(db, gallery[:1200])
    index = open_index(settings, db)
    extra = add_faces(db, gallery[1200:1210])  # not yet in the index
    status = index_status(settings, db, index)
    assert status["backend"] == "faiss" and status["kind"] == "faiss-exact" and status["training"] == "exact"
    assert status["faces"] == 1200 and status["database_faces"] == 1210 and not status["in_step"]
    assert status["exact_limit"] == LIMIT and status["memory_bytes"] >= 1200 * DIM * 4
    assert status["bytes_per_face"] == pytest.approx(status["memory_bytes"] / 1200)
    assert status["files"]["vectors.f32"] == 1200 * DIM * 4 and status["disk_bytes"] >= 1200 * DIM * 4
    index.add(extra, gallery[1200:1210])
    assert index_status(settings, db, index)["in_step"]
    json.dumps(status)  # serialisable as it is
    index.close()


def test_index_status_command(setup, data):
    from facetrail.cli import app

    settings, db = setup
    gallery, _ = data
    add_faces(db, gallery[:2100])
    runner = CliRunner()
    env = {"FACETRAIL_EXACT_LIMIT": str(LIMIT)}
    base = ["--data-dir", str(settings.data_dir)]
    result = runner.invoke(app, [*base, "index-status", "--json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["database_faces"] == 2100 and status["faces"] == 0 and not status["in_step"]

    result = runner.invoke(app, [*base, "index-status", "--train"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Trained in" in result.stdout and "faiss-ivf" in result.stdout and "in step" in result.stdout
    assert "vectors.f32" in result.stdout

    result = runner.invoke(app, [*base, "index-status", "--json"], env=env, catch_exceptions=False)
    status = json.loads(result.stdout)
    assert status["training"] == "trained" and status["in_step"] and status["nlist"] == 64
    assert status["memory_bytes"] < status["faces"] * 100  # compressed: < 100 B per face here

    small = runner.invoke(app, [*base, "index-status", "--train"], env={"FACETRAIL_EXACT_LIMIT": "100000"},
                          catch_exceptions=False)
    assert small.exit_code == 0 and "exact search, nothing to train" in small.stdout


def test_milvus_lite_is_chosen_by_a_db_uri(tmp_path, data):
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    from milvus_lite.server_manager import server_manager_instance

    from facetrail.index.milvus_index import MilvusIndex

    gallery, queries = data
    settings = settings_for(tmp_path / "data", vector_uri="vectors.db")  # relative: in the data folder
    db = Database(settings.db_url)
    ids = add_faces(db, gallery[:300])
    uri = str((settings.data_dir / "vectors.db").resolve())
    assert index_path(settings) == settings.data_dir.resolve() / "vectors.db"
    try:
        index = open_index(settings, db)
        assert isinstance(index, MilvusIndex) and index.kind == "milvus" and index.collection == "faces"
        assert index.uri == uri and len(index) == 300
        np.testing.assert_array_equal(index.search(queries[:20], 5)[1], brute_force(gallery[:300], ids, queries[:20], 5)[1])
        with db.session() as session, session.begin():
            session.execute(delete(Face).where(Face.id.in_(ids[:7].tolist())))
        assert sync(index, db) == (0, 7)
        status = index_status(settings, db, index)
        assert status["backend"] == "milvus-lite" and status["in_step"] and status["faces"] == 293
        assert status["training"] == "exact" and status["memory_bytes"] is None
        index.add(np.array([123_456]), np.zeros((1, DIM), np.float32))
        rebuilt = rebuild(settings, db)
        assert sorted(rebuilt.ids().tolist()) == sorted(ids[7:].tolist())
        assert not (settings.index_dir / "vectors.f32").exists()  # no FAISS files
        rebuilt.close()
        index.close()
    finally:
        server_manager_instance.release_server(uri)
        db.close()


def test_a_bad_vector_uri_is_refused(tmp_path):
    settings = settings_for(tmp_path, vector_uri="somewhere/vectors.sqlite")
    with pytest.raises(ValueError, match="vector_uri"):
        load_index(settings)
