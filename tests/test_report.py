"""The transparency report: counted from the audit log, written as HTML with charts, for auditors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from facetrail.cli import app as cli
from facetrail.index import open_index
from facetrail.search import Searcher
from facetrail.web import create_app

from .support import as_user, cli_base, investigator, login, open_case


def test_the_report_counts_searches_by_role_and_purpose_and_draws_them(dev_index, dev_images, engine, tmp_path):
    searcher = Searcher(dev_index.settings, dev_index.db, open_index(dev_index.settings, dev_index.db), engine)
    photo = [d for d in dev_images if d.identity == "halle_berry"][0].path.read_bytes()
    faceless = next(d for d in dev_images if d.identity == "none").path.read_bytes()
    for purpose in ("rights-management", "trust-and-safety"):
        open_case(dev_index.db, f"RP-{purpose}", purpose=purpose)
    for purpose, data in [("rights-management", photo), ("rights-management", photo), ("trust-and-safety", faceless)]:
        searcher.search(data, actor=investigator(), purpose=purpose, justification="report test",
                        case_ref=f"RP-{purpose}")
    today = datetime.now(UTC).date().isoformat()
    runner = CliRunner()
    base = cli_base(dev_index.settings)
    assert runner.invoke(cli, [*base, *as_user(dev_index.settings, "ivan"), "report", "--from", today, "--to", today,
                               "--out", str(tmp_path)]).exit_code == 2  # investigators may not
    made = runner.invoke(cli, [*base, *as_user(dev_index.settings, "otto"), "report", "--from", today, "--to", today, "--out", str(tmp_path)])
    assert made.exit_code == 0, made.output
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["searches_per_purpose"]["rights-management"] >= 2
    assert data["searches_per_role"]["investigator"] >= 3
    assert data["searches_without_face"] >= 1 and data["distinct_subjects"] >= 1
    assert data["searches"] == sum(data["searches_per_month"].values()) == sum(data["searches_per_role"].values())
    html = (tmp_path / "report.html").read_text()
    assert "Transparency report" in html and 'src="searches_per_purpose.png"' in html
    for name in ("searches_per_month", "searches_per_role", "searches_per_purpose"):
        assert Image.open(tmp_path / f"{name}.png").size == (600, 300)
    future = runner.invoke(cli, [*base, *as_user(dev_index.settings, "otto"), "report", "--from", "2999-01-01", "--to", "2999-01-31",
                                 "--out", str(tmp_path / "empty")])
    assert future.exit_code == 0 and json.loads((tmp_path / "empty" / "report.json").read_text())["searches"] == 0


def test_auditors_see_the_report_in_the_web_app(dev_index):
    with TestClient(create_app(dev_index.settings)) as client:
        login(client, "otto")
        page = client.get("/reports")
        assert page.status_code == 200 and "Transparency report" in page.text
        assert page.text.count("data:image/png;base64,") == 3
        assert "<style>" not in page.text  # the page obeys the CSP: no inline style
        client.cookies.clear()
        login(client, "ivan")
        assert client.get("/reports").status_code == 403


def test_the_report_shows_the_latest_evaluation_of_each_model(settings, dev_images, tmp_path):
    """`facetrail evaluate` runs are recorded; the report shows the newest per model, with the
    people and gallery it was measured on and what the figures mean at that size."""
    import shutil

    from facetrail.governance import report as transparency
    from facetrail.search.evaluate import evaluate
    from facetrail.store import Database

    folder = tmp_path / "labelled"
    folder.mkdir()
    rows = ["path,identity"]
    for identity in ("madonna", "bill_gates", "zhao_wei"):
        for n, d in enumerate([d for d in dev_images if d.identity == identity][:2]):
            shutil.copy(d.path, folder / f"{identity}-{n}.jpg")
            rows.append(f"{identity}-{n}.jpg,{identity}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    db = Database(settings.db_url)
    today = datetime.now(UTC).date()
    with db.session() as session:
        assert transparency.collect(session, today, today, 0.6)["evaluations"] == []
    evaluate(settings, db, investigator(), folder)
    second = evaluate(settings, db, investigator(), folder)
    with db.session() as session:
        data = transparency.collect(session, today, today, 0.6)
    [row] = data["evaluations"]  # the newest run of the one model evaluated
    assert row["model"] == second["model"] and row["people"] == 3 and row["gallery"] == 3
    assert row["figures"]["rank_1"] == second["figures"]["all"]["rank_1"]["value"]
    html = transparency.render(data, {})
    assert "Face models: latest evaluation" in html and second["model"] in html and "says\n    little" in html
