"""`facetrail reembed`: every stored face described again by another model from the kept crops,
resumable after an interruption, then one atomic, recorded switch; the old index serves until then."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.errors import Refused
from facetrail.faces import load_engine
from facetrail.index import open_index
from facetrail.ingest import walk
from facetrail.ingest.reembed import embed_pending, switch
from facetrail.search.service import Searcher
from facetrail.store import AuditEntry, Database, Face
from facetrail.store.media import MediaStore
from facetrail.store.models import FaceVector

from .support import add_accounts, cli_base, folder_ingestor, investigator, photo_of, settings_for

runner = CliRunner()
SEARCH = dict(purpose="source-verification", justification="testing", case_ref="T-1")


class Interrupted(Exception):
    pass


def _ingest(settings, db, paths):
    folder_ingestor(settings, db, open_index(settings, db), *paths).run(walk(paths))


def _count(db, what, *where):
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(what).where(*where))


def test_reembed_resumes_after_an_interruption_and_switches_once(tmp_path, db_url, dev_images):
    dlib = settings_for(tmp_path / "data", database_url=db_url)
    sface = dlib.model_copy(update={"face_model": "sface_2021dec"})
    db = Database(dlib.db_url)
    photos = [photo_of(dev_images, "madonna", 1), photo_of(dev_images, "bill_gates"),
              photo_of(dev_images, "anthony_hopkins")]
    _ingest(dlib, db, photos)
    add_accounts(db)
    total = _count(db, Face)
    assert total == 3

    def stop_after_first_batch(n):
        raise Interrupted  # as if the process were killed once the first batch had committed

    with pytest.raises(Interrupted):
        embed_pending(dlib, db, load_engine(dlib, "sface_2021dec"), batch=1, advance=stop_after_first_batch)
    assert _count(db, FaceVector) == 1 and _count(db, Face, Face.model == "dlib_resnet_v1") == total
    # the old model's index still serves in the meantime
    searcher = Searcher.open(dlib, db)
    found = searcher.search(photo_of(dev_images, "madonna", 0).read_bytes(), actor=investigator(), **SEARCH)
    assert "madonna" in found.results[0].image["location"]

    result = runner.invoke(app, [*cli_base(dlib), "reembed", "--model", "sface_2021dec", "--batch", "1"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"{total} faces described" in result.output
    assert _count(db, Face, Face.model == "sface_2021dec") == total and _count(db, FaceVector) == 0
    with db.session() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "model.switch")).all()
    assert len(entries) == 1 and entries[0].details["previous"] == ["dlib_resnet_v1"]

    with pytest.raises(Refused) as refused:  # the old model no longer matches the stored vectors
        open_index(dlib, db)
    assert refused.value.code == "model_mismatch"
    searcher = Searcher.open(sface, db)
    assert len(searcher.index) == total  # its own index, built by the command
    found = searcher.search(photo_of(dev_images, "madonna", 0).read_bytes(), actor=investigator(),
                            threshold=1.14, **SEARCH)
    assert [r.image["location"] for r in found.results] == [str(photos[0])]


def test_no_switch_while_a_face_lacks_the_new_models_descriptor(tmp_path, db_url, dev_images):
    dlib = settings_for(tmp_path / "data", database_url=db_url)
    db = Database(dlib.db_url)
    _ingest(dlib, db, [photo_of(dev_images, "madonna", 1)])
    embed_pending(dlib, db, load_engine(dlib, "sface_2021dec"))
    _ingest(dlib, db, [photo_of(dev_images, "bill_gates")])  # an ingest adds a face meanwhile
    assert switch(db, None, "sface_2021dec", MediaStore(dlib.media_dir)) is None
    assert _count(db, Face, Face.model == "dlib_resnet_v1") == 2  # nothing switched
    embed_pending(dlib, db, load_engine(dlib, "sface_2021dec"))
    done = switch(db, None, "sface_2021dec", MediaStore(dlib.media_dir))
    assert done.faces == 2 and _count(db, Face, Face.model == "sface_2021dec") == 2


def test_no_switch_while_opt_outs_of_the_old_model_exist(tmp_path, db_url, dev_images):
    """An opt-out keeps the old model's descriptors only: a switch would let the person back in."""
    import numpy as np

    from facetrail.governance.optout import record

    dlib = settings_for(tmp_path / "data", database_url=db_url)
    db = Database(dlib.db_url)
    _ingest(dlib, db, [photo_of(dev_images, "madonna", 1), photo_of(dev_images, "bill_gates")])
    with db.session() as session, session.begin():
        record(session, np.zeros((1, 128), np.float32), None, "dlib_resnet_v1")
    result = runner.invoke(app, [*cli_base(dlib), "reembed", "--model", "sface_2021dec"])
    assert result.exit_code != 0 and "opt-out" in result.output
    assert _count(db, Face, Face.model == "dlib_resnet_v1") == 2 and _count(db, FaceVector) == 0  # no work done
    with pytest.raises(Refused) as refused:
        switch(db, None, "sface_2021dec", MediaStore(dlib.media_dir))
    assert refused.value.code == "opt_outs_of_another_model"


@pytest.mark.slow
def test_reembed_killed_mid_run_keeps_its_batches_and_a_rerun_finishes_the_switch(tmp_path, db_url, dev_images):
    import os
    import signal
    import subprocess
    import time

    from facetrail.ingest.reembed import pending_count

    from .support import ROOT

    dlib = settings_for(tmp_path / "data", database_url=db_url)
    db = Database(dlib.db_url)
    photos = [d.path for d in dev_images if d.identity in ("madonna", "bill_gates")][:12]
    _ingest(dlib, db, photos)
    total = _count(db, Face)
    process = subprocess.Popen([str(ROOT / ".venv" / "bin" / "facetrail"), *cli_base(dlib), "reembed", "--model",
                                "sface_2021dec", "--batch", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _count(db, FaceVector) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = _count(db, FaceVector)
    assert 2 <= kept < total, "the run was not caught mid-way"
    assert _count(db, Face, Face.model == "dlib_resnet_v1") == total  # nothing switched
    assert pending_count(db, "sface_2021dec") == total - kept  # the rerun starts where it stopped
    result = runner.invoke(app, [*cli_base(dlib), "reembed", "--model", "sface_2021dec"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert _count(db, Face, Face.model == "dlib_resnet_v1") == 0 and _count(db, FaceVector) == 0
    assert _count(db, Face, Face.model == "sface_2021dec") >= total - 1  # at most a face SFace cannot find
    with db.session() as session:
        assert len(session.scalars(select(AuditEntry).where(AuditEntry.action == "model.switch")).all()) == 1


def test_an_ingest_running_across_the_switch_is_refused_until_reembed_runs_again(tmp_path, db_url, dev_images):
    dlib = settings_for(tmp_path / "data", database_url=db_url)
    sface = dlib.model_copy(update={"face_model": "sface_2021dec"})
    db = Database(dlib.db_url)
    _ingest(dlib, db, [photo_of(dev_images, "madonna", 1)])
    late = [photo_of(dev_images, "bill_gates")]
    running = folder_ingestor(dlib, db, open_index(dlib, db), *late)  # started before the switch
    runner.invoke(app, [*cli_base(dlib), "reembed", "--model", "sface_2021dec"], catch_exceptions=False)
    running.run(walk(late))  # stores a dlib face after the switch
    with pytest.raises(Refused) as refused:
        Searcher.open(sface, db)
    assert refused.value.code == "model_mismatch"
    result = runner.invoke(app, [*cli_base(dlib), "reembed", "--model", "sface_2021dec"], catch_exceptions=False)
    assert result.exit_code == 0 and "1 faces described" in result.output  # just the late one
    assert _count(db, Face, Face.model == "sface_2021dec") == 2
    assert len(Searcher.open(sface, db).index) == 2
