"""kill -9 in the middle of an ingest, then a rerun: the same database as an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from facetrail.index import open_index
from facetrail.store import Database, Face, Image, Location

from .support import settings_for

pytestmark = pytest.mark.slow


def index_cmd(data_dir, folder):
    return [sys.executable, "-m", "facetrail", "--data-dir", str(data_dir), "index", str(folder), "--workers", "2",
            "--legal-basis", "crash test photographs"]


def snapshot(data_dir):
    """Everything an ingest stores, without ids and timestamps."""
    settings = settings_for(data_dir)
    db = Database(settings.db_url)
    with db.session() as session:
        locations = {
            loc.location: (loc.image.sha256 if loc.image else None, loc.error)
            for loc in session.scalars(select(Location))
        }
        faces = sorted(
            (face.image.sha256, face.idx, face.box, hashlib.sha256(face.embedding).hexdigest())
            for face in session.scalars(select(Face))
        )
        images = session.scalar(select(func.count()).select_from(Image))
        face_ids = sorted(session.scalars(select(Face.id)))
    index = open_index(settings, db)
    assert sorted(index.ids().tolist()) == face_ids, "index and database disagree"
    return locations, faces, images


@pytest.fixture
def folder(tmp_path, dev_images):
    folder = tmp_path / "photos"
    for d in dev_images[::4]:
        target = folder / d.path.parent.name / d.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(d.path, target)
    shutil.copy(dev_images[0].path, folder / "duplicate.jpg")
    return folder


def start_and_wait_for_progress(data_dir, folder, total):
    """Start an ingest and return once a third of the files are stored (the process still running)."""
    process = subprocess.Popen(index_cmd(data_dir, folder), start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    db = Database(settings_for(data_dir).db_url)
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with db.session() as session:
                stored = session.scalar(select(func.count()).select_from(Location))
        except Exception:  # noqa: BLE001 - the schema may not exist yet
            stored = 0
        if stored >= total // 3:
            break
        time.sleep(0.05)
    db.close()
    assert process.poll() is None, "the ingest finished before it could be interrupted"
    assert 0 < stored < total
    return process


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_interrupted_ingest_then_rerun_equals_an_uninterrupted_run(tmp_path, folder, how):
    clean = tmp_path / "clean"
    subprocess.run(index_cmd(clean, folder), check=True, capture_output=True)
    expected = snapshot(clean)

    interrupted = tmp_path / "interrupted"
    process = start_and_wait_for_progress(interrupted, folder, len(expected[0]))
    os.killpg(process.pid, getattr(signal, how))  # Ctrl-C in a terminal signals the whole group
    output, _ = process.communicate(timeout=60)
    if how == "SIGINT":
        assert process.returncode == 130
        assert "Interrupted" in output and "again" in output

    rerun = subprocess.run(index_cmd(interrupted, folder), check=True, capture_output=True, text=True)
    assert "unchanged" in rerun.stdout
    assert snapshot(interrupted) == expected
    check = subprocess.run(
        [sys.executable, "-m", "facetrail", "--data-dir", str(interrupted), "check"], capture_output=True, text=True
    )
    assert check.returncode == 0 and "OK: consistent" in check.stdout, check.stdout


def test_ten_kills_at_random_points_then_a_rerun_completes(tmp_path, folder):
    """SIGKILL an ingest at random moments, again and again (each run resuming the last), then let
    one finish: the result equals an uninterrupted run and `facetrail check` finds it consistent."""
    import random

    clean = tmp_path / "clean"
    subprocess.run(index_cmd(clean, folder), check=True, capture_output=True)
    expected = snapshot(clean)

    data_dir = tmp_path / "killed"
    chance = random.Random(int(os.environ.get("FACETRAIL_KILL_SEED", "20261126")))
    kills = attempts = 0
    while kills < 10 and attempts < 40:  # a run that ends before its kill time is not a kill
        attempts += 1
        process = subprocess.Popen(index_cmd(data_dir, folder), start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(chance.uniform(0.3, 3.0))  # from start-up (migrations, model loading) to mid-batch
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
    assert kills >= 10
    rerun = subprocess.run(index_cmd(data_dir, folder), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    assert snapshot(data_dir) == expected
    check = subprocess.run(
        [sys.executable, "-m", "facetrail", "--data-dir", str(data_dir), "check"], capture_output=True, text=True
    )
    assert check.returncode == 0 and "OK: consistent" in check.stdout, check.stdout


def _in_session(sid: int) -> list[int]:
    """Processes of a session (the ingest and everything it started)."""
    found = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(stat))
    return found


def test_killing_the_ingest_alone_leaves_no_analysis_process(tmp_path, folder):
    """The OOM killer or `kill -9 PID` ends the command, not its analysis processes: they notice
    and end too, instead of holding their memory for ever."""
    total = sum(1 for p in folder.rglob("*") if p.is_file())
    process = start_and_wait_for_progress(tmp_path / "data", folder, total)
    assert len(_in_session(process.pid)) >= 3  # the command, the forkserver, the analysis processes
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 15
    while _in_session(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _in_session(process.pid) == []
