"""Repeat-subject holds and retention of query descriptors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from typer.testing import CliRunner

from facetrail.cli import app as cli
from facetrail.governance.accounts import create_user
from facetrail.governance.actors import Actor
from facetrail.index import open_index
from facetrail.search import Searcher
from facetrail.store import Approval, QueryEmbedding

from .support import cli_base, open_case


def test_the_nth_search_of_one_face_across_cases_is_held_for_a_supervisor(dev_index, dev_images, engine):
    settings = dev_index.settings.model_copy(update={"repeat_subject_count": 3})
    searcher = Searcher(settings, dev_index.db, open_index(settings, dev_index.db), engine)
    photos = [d.path.read_bytes() for d in dev_images if d.identity == "hugh_jackman"][:3]
    watcher = Actor("repeat-watcher", "investigator", "test")
    same_case = Actor("one-case", "investigator", "test")
    with dev_index.db.session() as session, session.begin():
        for actor in (watcher, same_case):
            create_user(session, None, actor.username, "investigator")
    for ref in ("R-1", "R-2", "R-3", "R-4", "C"):
        open_case(dev_index.db, ref, members=[watcher.username, same_case.username], purpose="trust-and-safety")

    def look(photo, case):
        return searcher.search(photo, actor=watcher, purpose="trust-and-safety", justification="j", case_ref=case)

    first, second = look(photos[0], "R-1"), look(photos[1], "R-2")
    assert first.results and second.results and second.approval["policy"] == "review"
    third = look(photos[2], "R-3")  # the same person, a third case: held
    assert third.results == [] and third.approval["policy"] == "prior"
    assert "repeat subject: 3 searches" in third.approval["note"]
    other = look([d.path.read_bytes() for d in dev_images if d.identity == "madonna"][0], "R-4")
    assert other.results and other.approval["policy"] == "review"  # a different person is not held

    for photo in photos:  # one case, the same face three times: a shared case reference is fine
        result = searcher.search(photo, actor=same_case, purpose="trust-and-safety", justification="j", case_ref="C")
        assert result.approval["policy"] == "review"
    with dev_index.db.session() as session:
        held = session.scalar(select(Approval).where(Approval.search_id == third.audit_id))
        assert held.state == "pending" and held.held_embedding is not None


def test_maintenance_deletes_descriptors_past_the_window(dev_index):
    with dev_index.db.session() as session, session.begin():
        total = session.scalar(select(func.count()).select_from(QueryEmbedding))
        assert total > 0
        oldest = session.scalar(select(QueryEmbedding.id).order_by(QueryEmbedding.id).limit(1))
        session.execute(update(QueryEmbedding).where(QueryEmbedding.id == oldest)
                        .values(created_at=datetime.now(UTC) - timedelta(days=31)))
    result = CliRunner().invoke(cli, [*cli_base(dev_index.settings), "maintenance"])
    assert result.exit_code == 0 and "Deleted 1 query descriptors older than 30 days" in result.stdout
    with dev_index.db.session() as session:
        assert session.scalar(select(func.count()).select_from(QueryEmbedding)) == total - 1
        assert session.get(QueryEmbedding, oldest) is None
