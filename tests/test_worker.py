"""`facetrail worker` on PostgreSQL: three worker processes share a queue, one is SIGKILLed while it
holds a lease, and every file is still ingested exactly once (its jobs are claimed again)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from facetrail.ingest.queue import counts
from facetrail.store import Database, Face, Image, Job, Location

from .support import postgres_database

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def pg_url():
    yield from postgres_database()


def cli(data_dir, url, *args):
    return [sys.executable, "-m", "facetrail", "--data-dir", str(data_dir), "--database-url", url, *args]


def test_three_workers_one_killed_every_file_once(tmp_path, dev_images, pg_url):
    folder = tmp_path / "photos"
    for d in dev_images[::6]:
        target = folder / d.path.parent.name / d.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(d.path, target)
    shutil.copy(dev_images[0].path, folder / "same-bytes.jpg")  # identical bytes under two names
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
    data = tmp_path / "data"
    queued = subprocess.run(cli(data, pg_url, "index", str(folder), "--queue", "--legal-basis", "worker test photos"),
                            capture_output=True, text=True)
    assert queued.returncode == 0 and f"Queued {len(files)} of {len(files)}" in queued.stdout, queued.stdout

    def worker(name):
        return subprocess.Popen(cli(data, pg_url, "worker", "--until-empty", "--batch", "3", "--lease", "4",
                                    "--workers", "1", "--name", name),
                                start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    workers = [worker(f"w{i}") for i in range(3)]
    db = Database(pg_url)
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline:  # kill w0 once it holds a lease
        with db.session() as session:
            held = session.scalar(select(func.count()).select_from(Job).where(
                Job.worker == "w0", Job.status == "running"))
        if held:
            os.killpg(workers[0].pid, signal.SIGKILL)
            victim = workers[0]
        time.sleep(0.05)
    assert victim is not None, "w0 never claimed a job"
    victim.wait(timeout=30)
    for process in workers[1:]:
        out, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors
    with db.session() as session:
        assert counts(session)["done"] + counts(session)["failed"] == len(files)
        assert counts(session)["queued"] == counts(session)["running"] == 0
        reclaimed = session.scalar(select(func.count()).select_from(Job).where(Job.attempts > 1))
        assert reclaimed >= 1  # the dead worker's jobs went to another worker after the lease
        assert sorted(session.scalars(select(Location.location))) == files  # every file once
        images = session.scalar(select(func.count()).select_from(Image))
        shas = session.scalar(select(func.count(func.distinct(Image.sha256))))
        assert images == shas == len(files) - 1  # same-bytes.jpg is the same image
        pairs = session.execute(select(Face.image_id, Face.idx)).all()
        assert len(pairs) == len(set(pairs)) > 0  # no face stored twice
    # workers write the database; the FAISS index follows it when next opened (here by `stats`)
    stats = subprocess.run(cli(data, pg_url, "stats"), capture_output=True, text=True)
    assert stats.returncode == 0, stats.stderr
    check = subprocess.run(cli(data, pg_url, "check"), capture_output=True, text=True)
    assert check.returncode == 0 and "OK: consistent" in check.stdout, check.stdout + check.stderr
