"""The data folder is private (issue 12, item 13): another local user must not be able to copy
the database (password and token hashes, descriptors, the audit log), the crops or the index.
Everything facetrail creates is 0700 (folders) / 0600 (files) even under a permissive umask,
and looser permissions found at start are warned about, on stderr and in the log."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from facetrail.store import Database
from facetrail.store.media import MediaStore
from facetrail.web import create_app

from .support import LEGAL_BASIS, ROOT, photo_of, settings_for

FACETRAIL = ROOT / ".venv" / "bin" / "facetrail"


@pytest.fixture
def loose_umask():
    """The usual umask of a desktop login (022): files 0644 unless facetrail says otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def modes(folder: Path) -> dict[str, int]:
    """Every path under `folder` (and itself) -> its permission bits."""
    found = {".": stat.S_IMODE(folder.stat().st_mode)}
    for path in folder.rglob("*"):
        found[str(path.relative_to(folder))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def readable_by_others(folder: Path) -> dict[str, str]:
    return {name: f"{mode:04o}" for name, mode in modes(folder).items() if mode & 0o077}


def facetrail(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """The real command, started by a user whose umask is 022."""
    return subprocess.run(
        [str(FACETRAIL), "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=600, check=False, preexec_fn=lambda: os.umask(0o022),
        env={**os.environ, "FACETRAIL_WORKERS": "1"},
    )


def test_an_ingest_leaves_nothing_another_user_can_read(tmp_path, dev_images):
    folder = tmp_path / "photos"
    folder.mkdir()
    for n, identity in enumerate(("madonna", "bill_gates")):
        (folder / f"{n}.jpg").write_bytes(photo_of(dev_images, identity).read_bytes())
    data = tmp_path / "new" / "data"  # its parent is created too
    done = facetrail(data, "index", str(folder), "--legal-basis", LEGAL_BASIS)
    assert done.returncode == 0, done.stderr
    assert "2 new images" in done.stdout and "warning" not in done.stderr
    found = modes(data)
    assert {"facetrail.db", "media", "index"} <= set(found)
    assert any(name.startswith("media/faces/") and name.endswith(".jpg") for name in found)
    assert any(name.startswith("index/") for name in found)
    assert readable_by_others(data) == {}
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_looser_existing_permissions_are_warned_about_at_start(tmp_path, dev_images):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(photo_of(dev_images, "madonna").read_bytes())
    data = tmp_path / "data"
    assert facetrail(data, "index", str(folder), "--legal-basis", LEGAL_BASIS).returncode == 0
    os.chmod(data, 0o755)  # as an operator's `cp -r` or an old version might leave them
    os.chmod(data / "facetrail.db", 0o644)
    again = facetrail(data, "index", str(folder))
    assert again.returncode == 0 and "1 unchanged" in again.stdout  # a warning, not a refusal
    warned = [line for line in again.stderr.splitlines() if "warning" in line]
    assert any(f"folder {data} has permissions 0755" in line and "chmod 700" in line for line in warned)
    assert any(f"file {data / 'facetrail.db'} has permissions 0644" in line for line in warned)
    assert stat.S_IMODE(data.stat().st_mode) == 0o755  # the operator's choice is not changed behind their back
    os.chmod(data, 0o700)
    os.chmod(data / "facetrail.db", 0o600)
    quiet = facetrail(data, "index", str(folder))
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_the_web_app_creates_a_private_data_folder_and_warns_at_start(tmp_path, db_url, loose_umask, capsys, caplog):
    settings = settings_for(tmp_path / "data", database_url=db_url)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
    assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
    assert readable_by_others(settings.data_dir) == {}
    if db_url.startswith("sqlite"):
        assert stat.S_IMODE((settings.data_dir.parent / "facetrail.db").stat().st_mode) == 0o600
    capsys.readouterr()
    os.umask(0o022)  # the app set 077 for itself; the operator loosens the folder
    os.chmod(settings.data_dir, 0o750)
    with caplog.at_level(logging.WARNING, logger="facetrail.permissions"), TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
    err = capsys.readouterr().err
    assert f"folder {settings.data_dir} has permissions 0750" in err
    assert any("0750" in record.getMessage() for record in caplog.records)


def test_the_database_file_and_media_are_private_whatever_the_umask(tmp_path, loose_umask):
    """Used as a library (no front door, no umask set): the SQLite file and its -wal/-shm files
    and every media file and folder are still created private."""
    db = Database(f"sqlite:///{tmp_path / 'lib' / 'facetrail.db'}")
    with db.engine.connect() as connection:
        connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS probe (x)")
        connection.exec_driver_sql("INSERT INTO probe VALUES (1)")
        connection.commit()
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "lib").iterdir()}
    db.close()
    assert {"facetrail.db", "facetrail.db-wal", "facetrail.db-shm"} <= set(files)
    assert set(files.values()) == {0o600}, files
    assert stat.S_IMODE((tmp_path / "lib").stat().st_mode) == 0o700
    media = MediaStore(tmp_path / "media")
    media.save("ab" * 32, b"thumb", [b"crop0", b"crop1"])
    assert readable_by_others(tmp_path / "media") == {}
    assert media.crop_path("ab" * 32, 1).read_bytes() == b"crop1"
