"""Stopping `facetrail worker`: SIGTERM (a service manager) lets it finish the files in hand and
leave the rest queued; Ctrl-C stops at once and puts the files it held back in the queue."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from facetrail.ingest.queue import counts
from facetrail.store import Database, Job


def cli(data_dir, *args):
    return [sys.executable, "-m", "facetrail", "--data-dir", str(data_dir), *args]


@pytest.fixture
def queued(tmp_path, dev_images):
    folder = tmp_path / "photos"
    for d in dev_images[:40]:
        target = folder / d.path.parent.name / d.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(d.path, target)
    data = tmp_path / "data"
    done = subprocess.run(cli(data, "index", str(folder), "--queue", "--legal-basis", "worker test photos"),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    db = Database(f"sqlite:///{data}/facetrail.db")
    yield data, db
    db.close()


def start_worker(data):
    return subprocess.Popen(cli(data, "worker", "--batch", "4", "--workers", "1", "--name", "w"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_lease(db, process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with db.session() as session:
            if session.scalar(select(func.count()).select_from(Job).where(Job.status == "running")):
                return
        time.sleep(0.02)
    raise AssertionError("the worker never claimed a job")


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_a_stopped_worker_leaves_no_file_leased(queued, how):
    data, db = queued
    worker = start_worker(data)
    wait_for_lease(db, worker)
    worker.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGINT)
    out, errors = worker.communicate(timeout=60)
    with db.session() as session:
        state = counts(session)
    assert state["running"] == 0  # nothing waits for a lease to run out
    assert state["queued"] > 0  # it stopped: the rest is left for other workers
    if how == "SIGTERM":
        assert worker.returncode == 0, errors
        assert state["done"] >= 4 and "Done:" in out  # the files in hand were finished first
    else:
        # 130, or ended by SIGINT itself (what a shell also reports as 130): CPython does the latter
        # when the interrupt passed through code run by exec(), e.g. a dataclass being defined
        assert worker.returncode in (130, -signal.SIGINT) and "back in the queue" in errors, errors
    assert state["queued"] + state["done"] + state["failed"] == 40
    finish = subprocess.run(cli(data, "worker", "--until-empty", "--workers", "1"), capture_output=True,
                            text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr
    with db.session() as session:
        assert counts(session)["done"] + counts(session)["failed"] == 40
