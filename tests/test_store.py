"""Schema, migrations, vector index and audit chain on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DBAPIError

from facetrail.governance import audit
from facetrail.index import FaissIndex, sync
from facetrail.governance.actors import Actor
from facetrail.store import AuditEntry, Base, Database, Face, Image


def test_migrations_build_exactly_the_models_schema(db_url):
    db = Database(db_url)
    Database(db_url)  # a second open is a no-op
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_faiss_index_add_remove_search_and_persist(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 128)).astype(np.float32)
    index = FaissIndex(tmp_path / "faces.faiss")
    index.add(np.arange(100, 150), vectors)
    distances, ids = index.search(vectors[7], 3)
    assert ids[0][0] == 107 and distances[0][0] == 0
    assert np.allclose(distances[0][1], np.sort(np.linalg.norm(vectors - vectors[7], axis=1))[1], rtol=1e-4)
    assert index.remove(np.array([107, 999])) == 1
    index.save()
    reopened = FaissIndex(tmp_path / "faces.faiss")
    assert len(reopened) == 49 and 107 not in reopened.ids()
    assert reopened.search(vectors[7], 1)[1][0][0] != 107


def _add_faces(db, n, rng):
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    with db.session() as session, session.begin():
        image = Image(sha256="a" * 64, bytes=1, width=1, height=1, format="PNG", first_seen=now, last_seen=now)
        session.add(image)
        for i in range(n):
            session.add(
                Face(image=image, idx=i, left=0, top=0, right=1, bottom=1, score=1.0, detector="test",
                     landmarks=[], model="test", embedding=rng.normal(size=128).astype(np.float32).tobytes())
            )


def test_index_is_brought_in_step_with_the_database(tmp_path, db_url):
    db = Database(db_url)
    _add_faces(db, 5, np.random.default_rng(1))
    index = FaissIndex(tmp_path / "faces.faiss")
    assert sync(index, db) == (5, 0)
    with db.session() as session, session.begin():
        gone = session.scalars(select(Face.id).order_by(Face.id).limit(2)).all()
        session.execute(delete(Face).where(Face.id.in_(gone)))
    assert sync(index, db) == (0, 2)
    with db.session() as session:
        remaining = sorted(session.scalars(select(Face.id)))
    assert len(remaining) == 3 and sorted(index.ids().tolist()) == remaining


def _write_entries(db, n):
    with db.session() as session, session.begin():
        for i in range(n):
            audit.record(session, Actor("alice", "investigator", "cli"), "search", f"case {i}",
                         result_count=i, results=[[i, 0.5]])


def test_the_database_rejects_updates_and_deletes_of_audit_entries(db_url):
    db = Database(db_url)
    _write_entries(db, 2)
    for statement in (
        update(AuditEntry).where(AuditEntry.id == 1).values(purpose="edited"),
        delete(AuditEntry).where(AuditEntry.id == 1),
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            with db.session() as session, session.begin():
                session.execute(statement)
    if db.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            with db.engine.begin() as conn:
                conn.execute(text("TRUNCATE audit_log CASCADE"))
    with db.session() as session:
        assert audit.verify(session) == (2, None)


def tamper(db, *statements):
    """Change the audit table as someone with full database access would: around the triggers."""
    with db.engine.begin() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # skips the triggers
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        for statement in statements:
            conn.execute(text(statement))


def first_problem(db):
    with db.session() as session:
        return audit.verify(session)


@pytest.mark.parametrize(
    ("statements", "broken_at", "reason"),
    [
        (["UPDATE audit_log SET purpose = 'edited' WHERE id = 3"], 3, "edited"),
        (["UPDATE audit_log SET details = '{}' WHERE id = 2"], 2, "edited"),
        (["DELETE FROM audit_log WHERE id = 2"], 3, "deleted"),
        (  # swap two entries' contents (their ids stay): a reordering
            [
                "UPDATE audit_log SET id = 100 WHERE id = 2",
                "UPDATE audit_log SET id = 2 WHERE id = 3",
                "UPDATE audit_log SET id = 3 WHERE id = 100",
            ],
            2,
            "previous hash",
        ),
        (  # insert a forged entry in the middle, shifting the later ones
            [
                "UPDATE audit_log SET id = id + 10 WHERE id >= 3",
                "INSERT INTO audit_log (id, created_at, actor, actor_kind, action, purpose, details, prev_hash, hash)"
                " SELECT 3, created_at, 'mallory', actor_kind, action, purpose, details, '" + "e" * 64 + "',"
                " '" + "f" * 64 + "' FROM audit_log WHERE id = 2",
            ],
            3,
            "previous hash",
        ),
    ],
    ids=["edit-purpose", "edit-details", "delete", "reorder", "insert"],
)
def test_verify_finds_each_kind_of_tampering(db_url, statements, broken_at, reason):
    db = Database(db_url)
    _write_entries(db, 5)
    assert first_problem(db) == (5, None)
    tamper(db, *statements)
    count, problem = first_problem(db)
    assert problem is not None and problem.entry_id == broken_at and reason in problem.reason


def test_migrations_on_sqlite_land_together_or_not_at_all(tmp_path):
    """A migration that fails (or a process killed while migrating) leaves the database as it was,
    not tables without the revision that made them (which made every later start fail with
    'table audit_log already exists'; found by the crash test under load)."""
    import shutil

    from alembic import command
    from sqlalchemy import inspect

    from facetrail.store.db import MIGRATIONS, alembic_config, newest_revision, transactional_sqlite

    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9999_fails.py").write_text(
        f"revision = '9999'\ndown_revision = '{newest_revision()}'\nbranch_labels = None\ndepends_on = None\n\n"
        "def upgrade():\n    raise RuntimeError('killed half way')\n\ndef downgrade():\n    pass\n")
    engine = transactional_sqlite(f"sqlite:///{tmp_path / 'half.db'}")
    config = alembic_config(engine)
    config.set_main_option("script_location", str(scripts))
    with pytest.raises(RuntimeError, match="killed half way"):
        command.upgrade(config, "head")
    assert inspect(engine).get_table_names() == []  # every earlier migration of the run was undone too
    engine.dispose()
    db = Database(f"sqlite:///{tmp_path / 'half.db'}")  # and the real migrations then run cleanly
    assert "audit_log" in inspect(db.engine).get_table_names()
