"""After a model switch (`facetrail reembed`), every command and worker without face_model set
follows the stored faces' model: a plain `facetrail index` stores the new model's faces, a plain
`facetrail search` finds them, and a `facetrail worker` running since before the switch loads the
new model before its next batch; one with face_model set to the old model stops (model_mismatch)
and gives its files back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

from sqlalchemy import func, select
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.ingest.queue import counts
from facetrail.store import AuditEntry, Database, Face, Image, Location

from .support import LEGAL_BASIS, ROOT, SEARCH_ARGS, add_accounts, as_user, cli_base, photo_of

runner = CliRunner()
SFACE = "sface_2021dec"
DLIB = "dlib_resnet_v1"


def _copy(folder, photos):
    folder.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        shutil.copy(photo, folder / f"{photo.parent.name}-{photo.name}")
    return folder


def _models(db, folder=None) -> dict[str, int]:
    """Faces by model (of the images found under `folder`, if given)."""
    query = select(Face.model, func.count()).group_by(Face.model)
    if folder is not None:
        query = query.where(Face.image_id.in_(select(Location.image_id).where(
            Location.location.like(f"{folder}%"))))
    with db.session() as session:
        return dict(session.execute(query).all())


def _cli(settings, *args, env=None):
    result = runner.invoke(app, [*cli_base(settings), *args], env=env)
    return result


def test_after_a_switch_plain_commands_ingest_and_search_with_the_new_model(settings, dev_images, tmp_path):
    db = Database(settings.db_url)
    first = _copy(tmp_path / "first", [photo_of(dev_images, "madonna", 1), photo_of(dev_images, "bill_gates")])
    done = _cli(settings, "index", str(first), "--legal-basis", LEGAL_BASIS, "--workers", "1")
    assert done.exit_code == 0, done.output
    assert _models(db) == {DLIB: 2}
    switched = _cli(settings, "reembed", "--model", SFACE)
    assert switched.exit_code == 0, switched.output
    assert "every command" in switched.output and "now uses sface_2021dec" in switched.output

    later = _copy(tmp_path / "later", [photo_of(dev_images, "madonna", 0), photo_of(dev_images, "anthony_hopkins")])
    done = _cli(settings, "index", str(later), "--legal-basis", LEGAL_BASIS, "--workers", "1")  # no model set
    assert done.exit_code == 0, done.output
    assert _models(db, later) == {SFACE: 2} and _models(db) == {SFACE: 4}

    add_accounts(db)
    found = _cli(settings, *as_user(settings, "ivan"), "search", str(photo_of(dev_images, "madonna", 2)),
                 *SEARCH_ARGS, "--json")
    assert found.exit_code == 0, found.output
    body = json.loads(found.stdout)
    with db.session() as session:
        searched = session.scalars(select(AuditEntry).where(AuditEntry.action == "search")).one()
    assert searched.details["model"] == SFACE
    locations = [r["image"]["location"] for r in body["results"]]
    assert locations and all("madonna" in location for location in locations[:2]), locations

    pinned = _cli(settings, "index", str(first), "--workers", "1", env={"FACETRAIL_FACE_MODEL": DLIB})
    assert pinned.exit_code == 2 and "face_model is set to dlib_resnet_v1" in pinned.output, pinned.output
    assert _models(db) == {SFACE: 4}


# --- workers -----------------------------------------------------------------------------------


def _worker(settings, name, env=None, *extra):
    return subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "facetrail"), *cli_base(settings), "worker", "--batch", "2", "--workers", "1",
         "--name", name, *extra],
        env={**os.environ, **(env or {})}, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def _queue(settings, folder):
    done = _cli(settings, "index", str(folder), "--queue", "--legal-basis", LEGAL_BASIS)
    assert done.exit_code == 0, done.output


def _wait_for(condition, process, what, seconds=180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{what}: never happened; worker: {process.poll()} {process.stderr.read() if process.poll() is not None else ''}")


def _queue_state(db):
    with db.session() as session:
        return counts(session)


def test_a_worker_running_since_before_the_switch_stores_the_new_models_faces(settings, dev_images, tmp_path):
    db = Database(settings.db_url)
    first = _copy(tmp_path / "first", [photo_of(dev_images, "madonna", 1), photo_of(dev_images, "bill_gates")])
    _queue(settings, first)
    worker = _worker(settings, "w")
    try:
        _wait_for(lambda: _queue_state(db)["done"] == 2, worker, "the first files ingested")
        assert _models(db) == {DLIB: 2}
        switched = _cli(settings, "reembed", "--model", SFACE)  # while the worker runs
        assert switched.exit_code == 0, switched.output
        later = _copy(tmp_path / "later", [photo_of(dev_images, "madonna", 0), photo_of(dev_images, "anthony_hopkins"),
                                           photo_of(dev_images, "bill_gates", 1)])
        _queue(settings, later)
        _wait_for(lambda: _queue_state(db)["done"] == 5, worker, "the later files ingested")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=120)
    assert worker.returncode == 0, errors
    assert _models(db, later) == {SFACE: 3}  # none of the old model
    assert _models(db) == {SFACE: 5}
    assert "now sface_2021dec (was dlib_resnet_v1)" in errors, errors


def test_a_worker_set_to_the_old_model_stops_and_gives_its_files_back(settings, dev_images, tmp_path):
    db = Database(settings.db_url)
    first = _copy(tmp_path / "first", [photo_of(dev_images, "madonna", 1)])
    _queue(settings, first)
    worker = _worker(settings, "pinned", {"FACETRAIL_FACE_MODEL": DLIB})
    try:
        _wait_for(lambda: _queue_state(db)["done"] == 1, worker, "the first file ingested")
        switched = _cli(settings, "reembed", "--model", SFACE)
        assert switched.exit_code == 0, switched.output
        later = _copy(tmp_path / "later", [photo_of(dev_images, "bill_gates"), photo_of(dev_images, "anthony_hopkins")])
        _queue(settings, later)
        _, errors = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 2, errors
    assert "face_model is set to dlib_resnet_v1" in errors and "sface_2021dec" in errors, errors
    state = _queue_state(db)
    assert state["running"] == 0 and state["queued"] == 2  # given back at once, not left to a lease
    assert _models(db) == {SFACE: 1}  # it stored nothing after the switch
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Image)) == 1
