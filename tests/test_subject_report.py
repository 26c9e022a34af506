"""Subject access reports: admins only, need a request reference, recorded, list what is held."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from facetrail.cli import app as cli
from facetrail.store import AuditEntry

from .support import cli_base


def test_an_admin_reports_what_the_index_holds_for_a_face(dev_index, dev_images, tmp_path):
    runner = CliRunner()
    base = cli_base(dev_index.settings)
    photo = str([d for d in dev_images if d.identity == "lindsay_lohan"][0].path)
    out = tmp_path / "report.json"
    refused = runner.invoke(cli, [*base, "--as", "ivan", "subject-report", photo, "--request-ref", "DSR-1"])
    assert refused.exit_code == 2 and "may not" in refused.output
    no_ref = runner.invoke(cli, [*base, "--as", "ada", "subject-report", photo])
    assert no_ref.exit_code == 2 and "request" in no_ref.output
    made = runner.invoke(cli, [*base, "--as", "ada", "subject-report", photo, "--request-ref", "DSR-1",
                               "--out", str(out)])
    assert made.exit_code == 0, made.output
    report = json.loads(out.read_text())
    assert report["request_ref"] == "DSR-1" and report["made_by"] == "ada"
    assert all("lindsay_lohan" in i["locations"][0] for i in report["images"][:5])  # nearest first
    distances = [i["distance"] for i in report["images"]]
    assert distances == sorted(distances) and max(distances) <= 0.6
    assert {"sha256", "locations", "first_seen", "last_seen", "face_box"} <= set(report["images"][0])
    with dev_index.db.session() as session:
        entry = session.get(AuditEntry, report["audit_id"])
    assert entry.action == "subject_report" and entry.details["request_ref"] == "DSR-1"
    assert entry.details["result_count"] == len(report["images"])
