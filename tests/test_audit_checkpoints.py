"""An audit log an outside party can verify: every entry a leaf of an RFC 9162 Merkle tree,
checkpoints signed with a key outside the database and kept by witnesses, and the attacks the
hash chain alone missed (issue 14), each made by an attacker with the database file or a
superuser (triggers dropped, every hash recomputed with facetrail's own code) and caught by
`facetrail audit verify --checkpoint` against a checkpoint taken before, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.config import Settings
from facetrail.errors import Refused
from facetrail.governance import audit, auditguards, audittree, checkpoints, merkle
from facetrail.governance.actors import Actor
from facetrail.store import AuditEntry, Database
from facetrail.store.models import AuditLeaf, AuditNode

from .support import ROOT, add_accounts, as_user, cli_base, settings_for

runner = CliRunner()
IVAN = Actor("ivan", "investigator", "test")
SUE = Actor("sue", "supervisor", "test")


@dataclass
class Log:
    settings: Settings
    db: Database
    witness: Path  # the witness file: what the database administrator cannot reach


def cli(settings: Settings, *args, user: str | None = "otto"):
    return runner.invoke(app, [*cli_base(settings), *as_user(settings, user), *args], catch_exceptions=False)


def searches(db: Database, count: int, start: int = 0) -> None:
    with db.session() as session, session.begin():
        for i in range(start, start + count):
            audit.record(session, IVAN, "search", "trust-and-safety", justification=f"case work {i}",
                         case_ref=f"C-{i}", results=[[i, 0.4]])


@pytest.fixture
def log(tmp_path, db_url) -> Log:
    """A log of accounts and 20 searches, a witness file configured in facetrail.toml (so the CLI
    sees it too) and a signing key made as `init` makes it."""
    data = tmp_path / "data"
    data.mkdir()
    witness = tmp_path / "elsewhere" / "checkpoints.log"
    (data / "facetrail.toml").write_text(f'audit_witnesses = ["file:{witness}"]\n')
    settings = settings_for(data, database_url=db_url)
    db = Database(settings.db_url)
    add_accounts(db)
    searches(db, 20)
    checkpoints.ensure_key(settings)
    return Log(settings, db, witness)


def checkpoint(log: Log) -> str:
    result = cli(log.settings, "audit", "checkpoint", user=None)
    assert result.exit_code == 0, result.output
    return result.stdout


def verify(log: Log, *checkpoint_files: Path):
    args = [arg for path in checkpoint_files for arg in ("--checkpoint", str(path))]
    return cli(log.settings, "audit", "verify", *args)


# --- the tree -----------------------------------------------------------------------------------


def test_every_entry_is_a_leaf_and_the_stored_tree_is_the_entries_tree(log):
    with log.db.session() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        expected = merkle.MemoryTree(audit.leaf(e) for e in entries)
        size = audittree.size(session)
        assert size == len(entries) > 20
        for n in (1, 7, size):
            assert audittree.root(session, n) == expected.root(n)
        for index in (0, size // 2, size - 1):
            proof = audittree.inclusion_proof(session, index, size)
            assert merkle.verify_inclusion(index, size, audit.leaf(entries[index]), proof, expected.root())
    assert verify(log).exit_code == 0


def test_init_makes_a_private_key_outside_the_database_and_prints_its_verifier_key(tmp_path):
    settings = settings_for(tmp_path / "data")
    result = runner.invoke(app, [*cli_base(settings), "init", "ada"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    key_file = settings.audit_key_path
    assert key_file.stat().st_mode & 0o777 == 0o600
    shown = re.search(r"verifier key.*: (\S+)", result.stdout).group(1)
    assert runner.invoke(app, [*cli_base(settings), "audit", "key"]).stdout.strip() == shown
    seed = checkpoints.load_key(settings).private_bytes_raw()
    database = (tmp_path / "data" / "facetrail.db").read_bytes()
    assert seed not in database and seed.hex().encode() not in database  # the key is not in the database
    again = runner.invoke(app, [*cli_base(settings), "audit", "key", "--create"])
    assert again.stdout.strip() == shown  # never a second key over the first


def test_a_key_from_the_environment_signs_instead_of_the_file(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    import base64

    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    settings = settings_for(tmp_path / "data", audit_key=base64.b64encode(seed).decode())
    db = Database(settings.db_url)
    with db.session() as session, session.begin():
        row = checkpoints.make(session, settings, checkpoints.load_key(settings))
    assert not settings.audit_key_path.exists()
    verifier = checkpoints.Verifier.of(settings, Ed25519PrivateKey.from_private_bytes(seed))
    assert checkpoints.signed_by(checkpoints.parse(row.note)[0], verifier)


def test_a_key_given_in_the_environment_never_reaches_the_database(tmp_path, monkeypatch):
    """The side door: every command records changed settings in the audit log; the key is redacted."""
    import base64

    seed = bytes(range(32))
    monkeypatch.setenv("FACETRAIL_AUDIT_KEY", base64.b64encode(seed).decode())
    settings = settings_for(tmp_path / "data")
    made = runner.invoke(app, [*cli_base(settings), "audit", "checkpoint"], catch_exceptions=False)
    assert made.exit_code == 0, made.output
    database = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("facetrail.db*"))
    assert b"settings.change" in database  # the settings were recorded...
    for form in (seed, seed.hex().encode(), base64.b64encode(seed)):
        assert form not in database  # ...without the key


def test_checkpoints_reach_the_witness_and_the_log_verifies_against_them(log):
    first = checkpoint(log)
    searches(log.db, 5, start=100)
    second = checkpoint(log)
    held = checkpoints.parse(log.witness.read_text())
    assert [c.note for c in held] == [first, second]
    assert held[1].size == held[0].size + 5
    result = verify(log, log.witness)
    assert result.exit_code == 0, result.output
    assert "consistent with 2 checkpoint(s)" in result.stdout
    searches(log.db, 3, start=200)  # growing after a checkpoint is what a log does
    assert verify(log, log.witness).exit_code == 0


# --- the attacks --------------------------------------------------------------------------------


def unguard(db: Database) -> None:
    """What an attacker with the file or a superuser does first: drop the append-only triggers."""
    with db.engine.begin() as conn:
        for name in auditguards.expected(conn.dialect.name):
            table = next(t for t in auditguards.GUARDED if name.startswith(t + "_no"))
            on = f" ON {table}" if conn.dialect.name == "postgresql" else ""
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name}{on}"))


def bodies(db: Database) -> list[dict]:
    with db.session() as session:
        return [{"id": e.id, "created_at": e.created_at, "actor": e.actor, "actor_kind": e.actor_kind,
                 "action": e.action, "purpose": e.purpose, "details": e.details}
                for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def rewrite(db: Database, entries: list[dict]) -> None:
    """Replace the log with `entries`, every chain hash and the whole Merkle tree recomputed with
    facetrail's own code: afterwards the log is internally perfect."""
    with db.session() as session, session.begin():
        for table in (AuditLeaf, AuditNode, AuditEntry):
            session.execute(delete(table))
        prev = audit.GENESIS
        for body in entries:
            entry = AuditEntry(**body)
            entry.prev_hash, entry.hash = prev, audit.entry_hash(prev, entry)
            session.add(entry)
            session.flush()
            audittree.append(session, entry.id, audit.leaf(entry))
            prev = entry.hash
        if session.get_bind().dialect.name == "postgresql":  # ids given: the sequence follows them
            session.execute(text("SELECT setval(pg_get_serial_sequence('audit_log', 'id'), "
                                 "(SELECT COALESCE(MAX(id), 0) + 1 FROM audit_log), false)"))


def truncate(log: Log) -> None:
    rewrite(log.db, bodies(log.db)[:-4])


def wipe(log: Log) -> None:
    rewrite(log.db, [])
    searches(log.db, 1, start=500)  # life goes on: one new entry on the empty log


def drop_and_recreate(log: Log) -> None:
    with log.db.engine.begin() as conn:
        cascade = " CASCADE" if conn.dialect.name == "postgresql" else ""
        for table in ("audit_leaves", "audit_nodes", "audit_log"):
            conn.execute(text(f"DROP TABLE {table}{cascade}"))
        for model in (AuditEntry, AuditLeaf, AuditNode):
            model.__table__.create(conn)
    searches(log.db, 3, start=600)


def rewrite_one(log: Log) -> None:
    entries = bodies(log.db)
    target = next(e for e in entries if e["details"].get("case_ref") == "C-3")
    target["details"] = {**target["details"], "justification": "court order 12/2026"}  # a better story
    rewrite(log.db, entries)


def forge_approval(log: Log) -> None:
    """A supervisor's approval that never happened, slipped in right after the search it
    approves (C-5, long checkpointed); the entries after it renumbered, everything rehashed."""
    entries = bodies(log.db)
    at = next(i for i, e in enumerate(entries) if e["details"].get("case_ref") == "C-5") + 1
    searched = entries[at - 1]
    forged = {**searched, "actor": SUE.username, "actor_kind": "user:supervisor", "action": "search.approve",
              "purpose": None, "details": {"via": "web", "os_user": None, "search_id": searched["id"],
                                           "reason": "approved"}}
    later = [{**e, "id": e["id"] + 1} for e in entries[at:]]
    rewrite(log.db, [*entries[:at], {**forged, "id": searched["id"] + 1}, *later])


ATTACKS = {"truncate newest 4": truncate, "wipe": wipe, "drop and recreate": drop_and_recreate,
           "rewrite and rehash": rewrite_one, "forged approval": forge_approval}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_attack_is_caught_against_an_earlier_checkpoint(log, attack):
    checkpoint(log)
    searches(log.db, 2, start=300)  # entries after the checkpoint: the attack may touch them too
    unguard(log.db)
    ATTACKS[attack](log)

    alone = verify(log)  # the chain and the tree alone: the attacker left them perfect...
    assert "BROKEN" not in alone.stdout, alone.stdout
    assert alone.exit_code == 1 and "AUDIT LOG UNGUARDED" in alone.stderr  # ...but the triggers are gone

    caught = verify(log, log.witness)
    assert caught.exit_code == 1
    assert "FAILED" in caught.stdout and "OK" not in caught.stdout, caught.stdout

    status = cli(log.settings, "audit", "status")
    assert status.exit_code == 1 and "MISSING" in status.stdout


def test_an_entry_slipped_in_without_the_tree_is_caught_even_without_a_checkpoint(log):
    unguard(log.db)
    entries = bodies(log.db)
    with log.db.session() as session, session.begin():  # chain extended correctly, tree not told
        head = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
        forged = AuditEntry(**{**entries[-1], "action": "search.approve", "id": None})  # the database numbers it
        forged.prev_hash, forged.hash = head, audit.entry_hash(head, forged)
        session.add(forged)
    result = verify(log)
    assert result.exit_code == 1 and "not in the Merkle tree" in result.stdout
    searches(log.db, 1, start=900)  # facetrail's next entry does not absorb it
    assert "BROKEN" in verify(log).stdout


def test_a_checkpoint_signed_with_another_key_or_edited_is_refused(log, tmp_path):
    note = checkpoint(log)
    other = settings_for(tmp_path / "other", database_url=log.settings.database_url,
                         audit_origin=checkpoints.parse(note)[0].origin)
    forged = checkpoints.sign(checkpoints.ensure_key(other)[0], other.audit_origin, 3,
                              merkle.EMPTY_ROOT, checkpoints.parse(note)[0].time)
    (tmp_path / "forged.cp").write_text(forged.note)
    result = verify(log, tmp_path / "forged.cp")
    assert result.exit_code == 1 and "signature does not verify" in result.stdout
    lines = note.split("\n")
    lines[1] = str(int(lines[1]) - 1)  # the size edited, signature kept
    (tmp_path / "edited.cp").write_text("\n".join(lines))
    assert "signature does not verify" in verify(log, tmp_path / "edited.cp").stdout


def test_the_trigger_check_catches_a_guard_replaced_by_one_that_lets_changes_through(log):
    with log.db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # the shared function made harmless, every trigger kept
            conn.execute(text("CREATE OR REPLACE FUNCTION facetrail_audit_append_only() RETURNS trigger "
                              "LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$"))
        else:  # the same name, a body that does nothing
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))
            conn.execute(text("CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT 1; END"))
    with log.db.session() as session:
        gone = auditguards.missing(session)
    assert gone == (auditguards.expected("postgresql") if log.db.engine.dialect.name == "postgresql"
                    else ["audit_log_no_delete"])
    assert "AUDIT LOG UNGUARDED" in verify(log).stderr
    with log.db.engine.begin() as conn:  # and the replaced guard does let a deletion through
        assert conn.execute(text("DELETE FROM audit_log WHERE id = (SELECT MAX(id) FROM audit_log)")).rowcount == 1


def test_the_trigger_check_catches_a_disabled_trigger_on_postgresql(log):
    if log.db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL can disable a trigger without dropping it")
    with log.db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"))
    with log.db.session() as session:
        assert auditguards.missing(session) == ["audit_log_no_change"]


# --- proofs for an outsider ---------------------------------------------------------------------


def standalone_verifier(tmp_path: Path) -> Path:
    """The program docs/audit-verification.md gives outsiders, taken from the page itself."""
    page = (ROOT / "docs" / "audit-verification.md").read_text()
    code = re.search(r"Save it\s+as `verify_audit.py`:\n\n```python\n(.*?)```", page, re.S).group(1)
    path = tmp_path / "verify_audit.py"
    path.write_text(code)
    return path


def outsider(tmp_path: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(standalone_verifier(tmp_path)), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_inclusion_proofs_of_old_and_new_entries_verify_outside_facetrail(log, tmp_path):
    with log.db.session() as session:
        oldest = session.scalar(select(AuditEntry.id).order_by(AuditEntry.id).limit(1))
    checkpoint(log)
    searches(log.db, 3, start=700)
    with log.db.session() as session:
        newest = session.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).limit(1))
    assert cli(log.settings, "audit", "prove", str(newest)).exit_code == 2  # not checkpointed yet: refused
    checkpoint(log)
    vkey = tmp_path / "vkey"
    vkey.write_text(cli(log.settings, "audit", "key", user=None).stdout)
    for entry_id in (oldest, newest):
        proof = tmp_path / f"proof-{entry_id}.json"
        proof.write_text(cli(log.settings, "audit", "prove", str(entry_id)).stdout)
        checked = outsider(tmp_path, "proof", proof, vkey)
        assert checked.returncode == 0 and f"entry {entry_id} is leaf" in checked.stdout, checked.stderr
        changed = json.loads(proof.read_text())
        changed["entry"]["details"]["case_ref"] = "C-other"
        proof.write_text(json.dumps(changed))
        assert outsider(tmp_path, "proof", proof, vkey).returncode == 1


def test_an_outsider_with_an_old_checkpoint_checks_that_the_log_only_grew(log, tmp_path):
    kept = tmp_path / "kept.checkpoint"  # what the outsider kept a while ago
    kept.write_text(checkpoint(log))
    searches(log.db, 7, start=800)
    checkpoint(log)
    vkey = tmp_path / "vkey"
    vkey.write_text(cli(log.settings, "audit", "key", user=None).stdout)
    proof = tmp_path / "grew.json"
    proof.write_text(cli(log.settings, "audit", "prove", "--from", str(kept)).stdout)
    checked = outsider(tmp_path, "consistency", proof, vkey)
    assert checked.returncode == 0 and "extends the one of" in checked.stdout, checked.stderr

    unguard(log.db)  # the log rewritten under the kept checkpoint, then a fresh checkpoint signed
    rewrite_one(log)
    checkpoint(log)
    proof.write_text(cli(log.settings, "audit", "prove", "--from", str(kept)).stdout)
    caught = outsider(tmp_path, "consistency", proof, vkey)
    assert caught.returncode == 1 and "does not extend" in caught.stderr


def test_the_standalone_verifier_agrees_with_facetrail_on_an_export(log, tmp_path):
    checkpoint(log)
    vkey = tmp_path / "vkey"
    vkey.write_text(cli(log.settings, "audit", "key", user=None).stdout)
    export = tmp_path / "export.jsonl"
    assert cli(log.settings, "audit", "export", "--out", str(export)).exit_code == 0
    assert outsider(tmp_path, "export", export, log.witness, vkey).returncode == 0
    assert verify(log, log.witness).exit_code == 0

    unguard(log.db)
    rewrite_one(log)
    assert cli(log.settings, "audit", "export", "--out", str(export)).exit_code == 0
    disagrees = outsider(tmp_path, "export", export, log.witness, vkey)
    assert disagrees.returncode == 1 and "tree head" in disagrees.stderr
    assert verify(log, log.witness).exit_code == 1


# --- many writers, and logs from before the tree ------------------------------------------------


def test_concurrent_writers_keep_the_tree_in_entry_order(log):
    import threading

    def write(worker: int) -> None:
        for i in range(15):
            with log.db.session() as session, session.begin():
                audit.record(session, IVAN, "search", "trust-and-safety", case_ref=f"T-{worker}-{i}")

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with log.db.session() as session:
        result = audit.walk(session)
        ids = list(session.scalars(select(AuditEntry.id).order_by(AuditEntry.id)))
        stored = [entry_id for _, entry_id, _ in audittree.leaves(session)]
    assert result.problem is None and result.count == len(ids) and stored == ids


def test_a_log_from_before_the_tree_is_put_into_it_on_upgrade(tmp_path, db_url):
    """Entries written at migration 0012 (no tree yet) become leaves, in order, at the first
    `audit verify` after the upgrade; nothing is reported broken."""
    from alembic import command

    from facetrail.store.db import alembic_config, make_engine

    engine = make_engine(db_url)
    command.upgrade(alembic_config(engine), "0012")
    with engine.begin() as conn:
        prev = audit.GENESIS
        for i in range(12):
            entry = AuditEntry(created_at=datetime.now(UTC), actor="ivan",
                               actor_kind="user:investigator", action="search", purpose="trust-and-safety",
                               details={"case_ref": f"OLD-{i}"})
            entry.prev_hash, entry.hash = prev, audit.entry_hash(prev, entry)
            conn.execute(AuditEntry.__table__.insert(), [{c.name: getattr(entry, c.name)
                                                          for c in AuditEntry.__table__.columns if c.name != "id"}])
            prev = entry.hash
    engine.dispose()
    settings = settings_for(tmp_path / "data", database_url=db_url)
    db = Database(settings.db_url)  # migrates to the newest revision
    add_accounts(db)  # the first entries after the upgrade
    with db.session() as session:
        result = audit.walk(session)
        first = [entry_id for _, entry_id, _ in audittree.leaves(session)][:12]
    assert result.problem is None and result.count > 12
    assert first == list(range(1, 13))


def test_after_the_newest_entries_are_deleted_nothing_more_is_done_until_it_is_checked(log):
    """SQLite numbers a new row after the highest id left, so a deletion of the newest entries
    brings their ids back: facetrail refuses to record (and so to act) rather than fork the tree."""
    if log.db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's sequences never give an id twice")
    unguard(log.db)
    with log.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id > (SELECT MAX(id) - 3 FROM audit_log)"))
    with pytest.raises(Refused) as refused, log.db.session() as session, session.begin():
        audit.record(session, IVAN, "search", "trust-and-safety", case_ref="after")
    assert refused.value.code == "audit_log_broken"
    checked = verify(log)
    assert checked.exit_code == 1 and "entries deleted" in checked.stdout, checked.output
