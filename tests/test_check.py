"""`facetrail check` finds disagreements between database, index and media, and repairs them."""

from __future__ import annotations

import shutil

import numpy as np
from sqlalchemy import delete, select
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.index import load_index
from facetrail.store import Database, Location

from .support import settings_for

runner = CliRunner()


def run(data_dir, *args):
    return runner.invoke(app, ["--data-dir", str(data_dir), *args], catch_exceptions=False)


def test_check_reports_then_repairs(tmp_path, dev_images):
    folder = tmp_path / "photos"
    folder.mkdir()
    for d in [d for d in dev_images if d.identity in ("madonna", "tom_hanks")][:4]:
        shutil.copy(d.path, folder / f"{d.identity}-{d.path.name}")
    data_dir = tmp_path / "data"
    assert run(data_dir, "index", str(folder), "--workers", "1", "--legal-basis", "test photographs").exit_code == 0
    healthy = run(data_dir, "check")
    assert healthy.exit_code == 0 and "OK: consistent" in healthy.stdout

    settings = settings_for(data_dir)
    db = Database(settings.db_url)
    index = load_index(settings)
    index.remove(index.ids()[:1])  # a face the index lost
    index.add(np.array([987654]), np.zeros((1, 128), np.float32))  # a face the database never had
    index.save()
    with db.session() as session, session.begin():  # an image no longer found anywhere
        session.execute(delete(Location).where(Location.id == session.scalar(select(Location.id).limit(1))))
    (settings.media_dir / "thumbs" / "ff").mkdir(parents=True)
    (settings.media_dir / "thumbs" / "ff" / ("f" * 64 + ".jpg")).write_bytes(b"stray")

    broken = run(data_dir, "check")
    assert broken.exit_code == 1
    assert "missing from index: 1, stale in index: 1" in broken.stdout
    assert "images found nowhere: 1, media files of no image: 1" in broken.stdout
    assert "INCONSISTENT" in broken.stdout
    assert "next command that opens the index" in broken.stdout  # what will happen, said (issue 13 item 5)

    assert "REPAIRED" in run(data_dir, "check", "--repair").stdout
    again = run(data_dir, "check")
    assert again.exit_code == 0 and "OK: consistent" in again.stdout
    assert "images found nowhere: 0, media files of no image: 0" in again.stdout
