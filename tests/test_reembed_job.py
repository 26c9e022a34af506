"""`facetrail reembed --background`: the re-embed is queued and a `facetrail worker` runs it between
ingest batches under a lease: `--status` shows its progress, `--cancel` stops it (the faces
described stay, a later re-embed resumes from them), a killed worker's job is taken over by the
next worker once the lease has run out and resumes where it stopped, and the switch happens once,
recorded in the name of whoever queued it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.index import open_index
from facetrail.ingest import walk
from facetrail.ingest.reembed import ReembedRunner
from facetrail.store import AuditEntry, Database, Face
from facetrail.store.models import FaceVector, ReembedJob

from .support import ROOT, add_accounts, as_user, cli_base, folder_ingestor, photo_of

runner = CliRunner()
SFACE = "sface_2021dec"


def _ingest(settings, db, photos):
    folder_ingestor(settings, db, open_index(settings, db), *photos).run(walk(photos))


def _count(db, what, *where):
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(what).where(*where))


def _switches(db):
    with db.session() as session:
        return session.scalars(select(AuditEntry).where(AuditEntry.action == "model.switch")).all()


def _jobs(db):
    with db.session() as session:
        return [(j.status, j.described, j.total) for j in session.scalars(select(ReembedJob).order_by(ReembedJob.id))]


def _status(settings):
    result = runner.invoke(app, [*cli_base(settings), "reembed", "--status", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_cancelled_reembed_keeps_its_faces_and_the_next_one_resumes_and_switches_once(settings, dev_images):
    db = Database(settings.db_url)
    photos = [photo_of(dev_images, who, n) for who in ("madonna", "bill_gates") for n in (0, 1)]
    _ingest(settings, db, photos)
    total = _count(db, Face)
    assert total == 4
    add_accounts(db)
    queued = runner.invoke(app, [*cli_base(settings), *as_user(settings, "ada"), "reembed", "--model", SFACE,
                                 "--background", "--batch", "1"])
    assert queued.exit_code == 0 and "Queued re-embed job" in queued.output, queued.output
    again = runner.invoke(app, [*cli_base(settings), "reembed", "--model", "fusion_dlib_sface", "--background"])
    assert again.exit_code == 2 and "a re-embed to sface_2021dec is queued" in again.output, again.output
    assert _count(db, FaceVector) == 0  # queued only: nothing done yet

    log: list[str] = []
    first = ReembedRunner(settings, db, "w1", log=log.append)
    assert first.step() and first.step()  # two batches of one face
    [shown] = _status(settings)
    assert (shown["status"], shown["described"], shown["total"], shown["worker"]) == ("running", 2, total, "w1")

    cancelled = runner.invoke(app, [*cli_base(settings), "reembed", "--cancel"])
    assert cancelled.exit_code == 0 and "after 2 faces" in cancelled.output, cancelled.output
    first.step()  # the worker's next batch is not committed: it stops
    assert first.job is None and "cancelled or taken over" in log[-1]
    assert _count(db, FaceVector, FaceVector.model == SFACE) == 2  # kept
    assert _count(db, Face, Face.model == SFACE) == 0 and not _switches(db)  # no switch
    assert _status(settings)[0]["status"] == "cancelled"
    assert not ReembedRunner(settings, db, "w1").step()  # nothing left to run

    queued = runner.invoke(app, [*cli_base(settings), *as_user(settings, "ada"), "reembed", "--model", SFACE,
                                 "--background", "--batch", "1"])
    assert queued.exit_code == 0 and f"({total - 2} faces to describe)" in queued.output, queued.output
    second = ReembedRunner(settings, db, "w2", log=log.append)
    while second.step():
        pass
    assert f"re-embed to sface_2021dec (job 2): {total - 2} of {total - 2} faces described" in log  # progress
    assert [status for status, _, _ in _jobs(db)] == ["cancelled", "done"]
    assert sum(described for _, described, _ in _jobs(db)) == total  # no face described twice
    assert _count(db, Face, Face.model == SFACE) == total and _count(db, FaceVector) == 0
    [switched] = _switches(db)
    assert switched.actor == "ada" and switched.details["previous"] == ["dlib_resnet_v1"]
    text = runner.invoke(app, [*cli_base(settings), "reembed", "--status"])
    assert f"job 2: sface_2021dec, done, worker w2, {total - 2}/{total - 2} faces described, queued by ada" in text.output


def _worker(settings, name, *extra):
    return subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "facetrail"), *cli_base(settings), "worker", "--workers", "1", "--lease", "3",
         "--name", name, *extra],
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_killed_workers_reembed_is_resumed_by_the_next_worker_and_switches_once(settings, dev_images):
    db = Database(settings.db_url)
    photos = [d.path for d in dev_images if d.identity in ("madonna", "bill_gates", "anthony_hopkins")][:14]
    _ingest(settings, db, photos)
    total = _count(db, Face)
    add_accounts(db)
    queued = runner.invoke(app, [*cli_base(settings), *as_user(settings, "ada"), "reembed", "--model", SFACE,
                                 "--background", "--batch", "1"])
    assert queued.exit_code == 0, queued.output

    first = _worker(settings, "w1")
    deadline = time.monotonic() + 180
    while _count(db, FaceVector) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    kept = _count(db, FaceVector)
    assert 2 <= kept < total, "the worker was not caught mid-way"
    assert _jobs(db) == [("running", kept, total)] and not _switches(db)  # its lease still runs

    second = _worker(settings, "w2", "--until-empty")  # claims the job once w1's lease has run out
    _, errors = second.communicate(timeout=300)
    assert second.returncode == 0, errors
    assert f"{total - kept} faces to describe" in errors, errors  # resumed, not started again
    assert _jobs(db) == [("done", total, total)]  # every face described once
    [switched] = _switches(db)
    assert switched.actor == "ada"
    assert _count(db, Face, Face.model == "dlib_resnet_v1") == 0 and _count(db, FaceVector) == 0
    assert _count(db, Face, Face.model == SFACE) >= total - 1  # at most a face SFace cannot find


def test_a_worker_alternates_files_and_reembed_batches_and_follows_its_own_switch(settings, dev_images, tmp_path):
    import shutil

    from facetrail.ingest.worker import DatabaseOnly, run_worker

    from .support import LEGAL_BASIS

    db = Database(settings.db_url)
    _ingest(settings, db, [photo_of(dev_images, who) for who in ("madonna", "bill_gates", "anthony_hopkins")])
    queued = runner.invoke(app, [*cli_base(settings), "reembed", "--model", SFACE, "--background", "--batch", "1"])
    assert queued.exit_code == 0, queued.output
    folder = tmp_path / "later"
    folder.mkdir()
    for n in range(1, 4):
        photo = photo_of(dev_images, "madonna", n)
        shutil.copy(photo, folder / photo.name)
    done = runner.invoke(app, [*cli_base(settings), "index", str(folder), "--queue", "--legal-basis", LEGAL_BASIS])
    assert done.exit_code == 0, done.output

    events: list[str] = []
    summary = run_worker(settings.model_copy(update={"workers": 1}), db, DatabaseOnly(), "w", batch=1,
                         until_empty=True, on_batch=lambda s: events.append(f"files {s.files}"),
                         log=events.append)
    assert summary.files == 3
    switched = next(i for i, e in enumerate(events) if e.startswith("switched to"))
    assert "files 1" in events[:switched], events  # files were ingested while the re-embed ran
    assert [e for e in events if e.startswith("files")] == ["files 1", "files 2", "files 3"]
    assert _jobs(db)[0][0] == "done" and len(_switches(db)) == 1
    assert _count(db, Face, Face.model != SFACE) == 0  # faces ingested before the switch were described too
    assert _count(db, Face) >= 5


def test_only_an_admin_account_queues_cancels_or_runs_a_reembed(settings):
    """Side door: an investigator's account (ivan) from the CLI can neither queue, cancel nor run a
    re-embed; the job an admin (ada) queued stays as it was, and nothing is recorded in ivan's name."""
    db = Database(settings.db_url)
    add_accounts(db)
    ivan = [*cli_base(settings), *as_user(settings, "ivan"), "reembed"]
    for args in (["--model", SFACE, "--background"], ["--model", SFACE]):
        refused = runner.invoke(app, [*ivan, *args])
        assert refused.exit_code == 2 and "may not do this" in refused.output, refused.output
    assert _jobs(db) == []
    queued = runner.invoke(app, [*cli_base(settings), *as_user(settings, "ada"), "reembed", "--model", SFACE,
                                 "--background"])
    assert queued.exit_code == 0, queued.output
    refused = runner.invoke(app, [*ivan, "--cancel"])
    assert refused.exit_code == 2 and "may not do this" in refused.output, refused.output
    assert [status for status, _, _ in _jobs(db)] == ["queued"]
    with db.session() as session:
        assert not session.scalars(select(AuditEntry).where(AuditEntry.actor == "ivan",
                                                            AuditEntry.action.like("model.%"))).all()
