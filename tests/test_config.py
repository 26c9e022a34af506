"""Settings from a configuration file, and every change of settings on the audit record."""

from __future__ import annotations

from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.config import get_settings
from facetrail.governance.audit import verify
from facetrail.store import AuditEntry, Database

runner = CliRunner()


def settings_entries(db):
    with db.session() as session:
        return [e.details for e in session.scalars(
            select(AuditEntry).where(AuditEntry.action == "settings.change").order_by(AuditEntry.id))]


def test_approval_policy_from_the_config_file_environment_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("FACETRAIL_URGENT_HOURS", raising=False)
    (tmp_path / "facetrail.toml").write_text(
        'approval_policy = { investigator = "prior", supervisor = "review" }\nurgent_hours = 24\n')
    settings = get_settings(data_dir=tmp_path)
    assert settings.approval_policy["investigator"] == "prior" and settings.urgent_hours == 24
    assert settings.config_file == tmp_path / "facetrail.toml"
    monkeypatch.setenv("FACETRAIL_URGENT_HOURS", "12")
    assert get_settings(data_dir=tmp_path).urgent_hours == 12


def test_bad_config_files_are_refused_with_the_reason(tmp_path):
    (tmp_path / "facetrail.toml").write_text('approval_policy = { investigator = "never" }\n')
    result = runner.invoke(app, ["--data-dir", str(tmp_path), "stats"])
    assert result.exit_code == 2 and "approval policy of 'investigator'" in result.output
    (tmp_path / "facetrail.toml").write_text("aproval_policy = 1\n")
    result = runner.invoke(app, ["--data-dir", str(tmp_path), "stats"])
    assert result.exit_code == 2 and "unknown setting(s) aproval_policy" in result.output
    (tmp_path / "facetrail.toml").write_text("urgent_hours = \n")
    result = runner.invoke(app, ["--data-dir", str(tmp_path), "stats"])
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_settings_changes_are_audited_once_each(tmp_path, monkeypatch):
    monkeypatch.setenv("FACETRAIL_VECTOR_TOKEN", "s3cret-token")
    data = ["--data-dir", str(tmp_path)]
    assert runner.invoke(app, [*data, "stats"]).exit_code == 0
    assert runner.invoke(app, [*data, "stats"]).exit_code == 0  # nothing changed: nothing recorded
    db = Database(f"sqlite:///{tmp_path / 'facetrail.db'}")
    [first] = settings_entries(db)
    assert first["first"] is True and first["settings"]["vector_token"] == "(set)"
    assert "s3cret" not in str(first)
    (tmp_path / "facetrail.toml").write_text('approval_policy = { investigator = "prior" }\n')
    assert runner.invoke(app, [*data, "stats"]).exit_code == 0
    second = settings_entries(db)[1]
    assert second["changed"] == ["approval_policy"]
    assert second["settings"]["approval_policy"] == {"investigator": "prior"}
    with db.session() as session:
        assert verify(session)[1] is None
