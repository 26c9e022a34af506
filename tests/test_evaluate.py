"""`facetrail evaluate`: NIST-style figures of a model on a labelled folder, recorded in the
audit log; the metrics themselves on data whose answers are known."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.search import metrics
from facetrail.store import AuditEntry, Database

from .support import cli_base

runner = CliRunner()
PEOPLE = ["anthony_hopkins", "bill_gates", "madonna", "will_smith", "bbt_howard", "mindy_kaling", "noam_chomsky",
          "kate_siegel"]


# --- the metrics on known data ----------------------------------------------------------------


def _clusters(n_people=6, per=4, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_people, 16))
    vectors = np.repeat(centres, per, axis=0) + rng.standard_normal((n_people * per, 16)) * spread
    return vectors.astype(np.float32), np.repeat(np.arange(n_people).astype(str), per)


def test_well_separated_people_are_all_found_and_no_stranger_comes_close():
    vectors, who = _clusters()
    figures = metrics.figures(vectors, who, np.ones(len(who), bool))
    assert figures["rank_1"]["value"] == 1.0 and figures["tar_at_far_0.001"]["value"] == 1.0
    assert figures["fnir_at_fpir_0.003"]["value"] == 0.0
    assert figures["counts"]["mated_searches"] == 6 * 3 and figures["counts"]["gallery"] == 6
    assert figures["counts"]["nonmated_searches"] == 24


def test_a_photo_without_a_face_is_a_failure_to_enrol_and_a_miss():
    vectors, who = _clusters()
    usable = np.ones(len(who), bool)
    usable[[1, 2]] = False  # two searches of person 0 found no face
    figures = metrics.figures(vectors, who, usable)
    assert figures["failure_to_enrol"] == pytest.approx(2 / 24)
    assert figures["rank_1"]["value"] == pytest.approx(16 / 18)
    assert figures["rank_1"]["low"] <= figures["rank_1"]["value"] <= figures["rank_1"]["high"] == 1.0


def test_a_search_closer_to_a_stranger_misses_at_rank_one_but_not_at_rank_ten():
    vectors, who = _clusters()
    vectors[5] = vectors[8] + 0.01  # a photo of person 1 that looks like person 2
    found = metrics.searches(vectors, who, np.ones(len(who), bool))
    assert metrics.rank_k(found, 1) == pytest.approx(17 / 18)
    assert metrics.rank_k(found, 10) == 1.0
    assert metrics.fnir_at(found, 0.003) >= 1 / 18


def test_tar_at_far_takes_the_threshold_from_the_impostors():
    genuine = np.array([0.1, 0.2, 0.3, 0.9])
    impostor = np.linspace(0.5, 1.5, 1000)
    assert metrics.threshold_at(impostor, 1e-3) == pytest.approx(impostor[1])
    assert metrics.tar_at(genuine, impostor, 1e-3) == 0.75


# --- the command on dev photos ----------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, dev_images):
    """A labelled folder naming dev photos by absolute path (nothing copied), in two groups."""
    folder = tmp_path_factory.mktemp("labelled")
    chosen = [d for p in PEOPLE for d in [x for x in dev_images if x.identity == p][:3]]
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "identity", "group"])
        for i, d in enumerate(chosen):
            writer.writerow([str(d.path), d.identity, "a" if PEOPLE.index(d.identity) % 2 else "b"])
        writer.writerow([str(next(x.path for x in dev_images if x.identity == "none")), "none", "a"])
    return folder, chosen


def test_evaluate_reports_the_figures_of_the_photos_and_records_the_run(settings, labelled, engine, tmp_path):
    folder, chosen = labelled
    out_json, out_html = tmp_path / "report.json", tmp_path / "report.html"
    result = runner.invoke(app, [*cli_base(settings), "evaluate", str(folder), "--json", str(out_json),
                                 "--html", str(out_html)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(out_json.read_text())
    assert report["model"] == "dlib_resnet_v1" and report["people"] == len(PEOPLE)
    figures = report["figures"]["all"]
    assert figures["counts"]["photos"] == len(chosen)  # the distractor row is left out
    # the same searches done here by brute force with the engine
    vectors = [engine.faces(np.asarray(Image.open(d.path).convert("RGB"))) for d in chosen]
    gallery = {}
    for d, faces in zip(chosen, vectors):
        if faces and d.identity not in gallery and sum(x.identity == d.identity for x in chosen) > 1:
            gallery[d.identity] = (d, faces[0].embedding)
    hits = searched = 0
    for d, faces in zip(chosen, vectors):
        if d.identity not in gallery or gallery[d.identity][0] is d:
            continue
        searched += 1
        if faces:
            nearest = min(gallery, key=lambda who: np.linalg.norm(gallery[who][1] - faces[0].embedding))
            hits += nearest == d.identity
    assert figures["counts"]["mated_searches"] == searched
    assert figures["rank_1"]["value"] == pytest.approx(hits / searched)
    assert set(report["figures"]) == {"all", "a", "b"}
    assert "rank_1" in out_html.read_text() and "dlib_resnet_v1" in out_html.read_text()
    with Database(settings.db_url).session() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "model.evaluate")).one()
    assert entry.details["model"] == "dlib_resnet_v1"
    assert entry.details["figures"]["rank_1"] == figures["rank_1"]["value"]
    assert entry.details["manifest_sha256"] == report["manifest_sha256"]


def test_evaluate_refuses_a_folder_without_a_manifest_or_with_one_person(settings, tmp_path, dev_images):
    result = runner.invoke(app, [*cli_base(settings), "evaluate", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 2 and "manifest.csv" in result.output
    one = [d for d in dev_images if d.identity == "madonna"][:3]
    (tmp_path / "manifest.csv").write_text("path,identity\n" + "".join(f"{d.path},madonna\n" for d in one))
    result = runner.invoke(app, [*cli_base(settings), "evaluate", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 2 and "two people" in result.output
    with Database(settings.db_url).session() as session:
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "model.evaluate")).all() == []


@pytest.mark.slow
def test_evaluate_on_the_whole_dev_set_gives_the_benchs_figures(tmp_path, dev_images):
    """bench/models.py's figures for dlib (docs/figures.md#face-models), through the command."""
    from .support import DEV, settings_for

    settings = settings_for(tmp_path / "data")
    out_json = tmp_path / "dev.json"
    result = runner.invoke(app, [*cli_base(settings), "evaluate", str(DEV), "--json", str(out_json)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    figures = json.loads(out_json.read_text())["figures"]["all"]
    assert figures["counts"]["photos"] == 236 and figures["failure_to_enrol"] == 0
    assert figures["rank_1"]["value"] == pytest.approx(0.976, abs=0.0015)
    assert figures["tar_at_far_0.001"]["value"] == pytest.approx(0.835, abs=0.0015)
    assert figures["fnir_at_fpir_0.003"]["value"] == pytest.approx(0.396, abs=0.0015)


def test_a_group_with_nobody_to_search_for_is_reported_as_not_measurable(settings, tmp_path, dev_images):
    rows = [(d.path, d.identity, "pairs") for p in ("madonna", "bill_gates") for d in
            [x for x in dev_images if x.identity == p][:2]]
    rows += [(next(d.path for d in dev_images if d.identity == p), p, "single") for p in ("kate_siegel", "nathalie_baye")]
    (tmp_path / "manifest.csv").write_text("path,identity,group\n" + "".join(f"{p},{i},{g}\n" for p, i, g in rows))
    out_json = tmp_path / "r.json"
    result = runner.invoke(app, [*cli_base(settings), "evaluate", str(tmp_path), "--json", str(out_json),
                                 "--html", str(tmp_path / "r.html")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(out_json.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert report["figures"]["single"]["rank_1"]["value"] is None
    assert report["figures"]["pairs"]["rank_1"]["value"] == 1.0
    assert "not measurable" in result.output and "not measurable" in (tmp_path / "r.html").read_text()
