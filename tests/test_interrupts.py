"""Ctrl-C in a command that defers it (worker, ingest): never in the middle of a transaction."""

from __future__ import annotations

import os
import signal

import pytest
from sqlalchemy import text

from facetrail import interrupts
from facetrail.store import Database


@pytest.fixture
def deferring():
    interrupts.defer_while_in_session()
    yield
    signal.signal(signal.SIGINT, signal.default_int_handler)


def test_a_ctrl_c_inside_a_transaction_comes_after_its_commit(tmp_path, deferring):
    db = Database(f"sqlite:///{tmp_path}/t.db")
    with db.session() as session, session.begin():
        session.execute(text("CREATE TABLE t (n INTEGER)"))
    with pytest.raises(KeyboardInterrupt):
        with db.session() as session, session.begin():
            session.execute(text("INSERT INTO t VALUES (1)"))
            os.kill(os.getpid(), signal.SIGINT)
            session.execute(text("INSERT INTO t VALUES (2)"))  # still runs: the interrupt waits
    with db.session() as session:
        assert session.scalar(text("SELECT count(*) FROM t")) == 2
    db.close()


def test_outside_a_session_a_ctrl_c_stops_at_once(deferring):
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
