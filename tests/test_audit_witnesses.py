"""Witnesses get every checkpoint: a folder, syslog and an HTTP endpoint (real local servers on
127.0.0.1); one that cannot be reached is retried and reported by `facetrail audit status`, never
skipped. The web server checks the append-only triggers when it starts, signs checkpoints while
it runs and one when it stops."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.governance import audit, auditguards, checkpoints
from facetrail.governance.actors import Actor
from facetrail.store import Database
from facetrail.web import create_app

from .support import add_accounts, as_user, cli_base, settings_for

runner = CliRunner()


def cli(settings, *args, user="otto"):
    return runner.invoke(app, [*cli_base(settings), *as_user(settings, user), *args], catch_exceptions=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receiver(BaseHTTPRequestHandler):
    notes: list[str]

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.notes.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


def start_receiver(port: int, notes: list[str]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), type("R", (Receiver,), {"notes": notes}))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def logged(db: Database, count: int) -> None:
    with db.session() as session, session.begin():
        for i in range(count):
            audit.record(session, Actor("ivan", "investigator", "test"), "search", "trust-and-safety", case_ref=f"W-{i}")


def test_an_unreachable_http_witness_is_retried_and_reported_until_it_has_every_checkpoint(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/checkpoints"
    folder = tmp_path / "witness-dir"
    settings = settings_for(tmp_path / "data", audit_witnesses=[url, f"dir:{folder}"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "facetrail.toml").write_text(f'audit_witnesses = ["{url}", "dir:{folder}"]\n')
    db = Database(settings.db_url)
    add_accounts(db)
    checkpoints.ensure_key(settings)

    down = cli(settings, "audit", "checkpoint", user=None)  # nobody listens on the port yet
    assert down.exit_code == 1 and "witness not reached" in down.stderr and url in down.stderr
    status = cli(settings, "audit", "status")
    assert status.exit_code == 1
    assert f"witness {url}: holds nothing yet, 1 pending, last error: ConnectError" in status.stdout
    assert len(list(folder.iterdir())) == 1  # the other witness got it regardless

    notes: list[str] = []
    server = start_receiver(port, notes)
    try:
        logged(db, 3)
        up = cli(settings, "audit", "checkpoint", user=None)
        assert up.exit_code == 0, up.output
    finally:
        server.shutdown()
        server.server_close()
    received = [checkpoints.parse(note)[0] for note in notes]
    assert [c.size for c in received] == sorted(c.size for c in received) and len(received) == 2  # the old one too
    assert received[1].note == up.stdout
    verifier = checkpoints.Verifier.of(settings, checkpoints.load_key(settings))
    assert all(checkpoints.signed_by(c, verifier) for c in received)
    assert len(list(folder.iterdir())) == 2
    status = cli(settings, "audit", "status")
    assert status.exit_code == 0 and "0 pending" in status.stdout and "all in place" in status.stdout


def test_a_syslog_witness_gets_the_whole_note_in_one_line(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.settimeout(10)
        target = f"syslog:127.0.0.1:{collector.getsockname()[1]}"
        settings = settings_for(tmp_path / "data", audit_witnesses=[target])
        db = Database(settings.db_url)
        logged(db, 5)
        key = checkpoints.ensure_key(settings)[0]
        with db.session() as session, session.begin():
            row = checkpoints.make(session, settings, key)
        with db.session() as session, session.begin():
            assert checkpoints_failing(session) == []
        line = collector.recv(65536).decode()
    assert line.startswith("<37>facetrail: facetrail-checkpoint ")  # auth.notice
    note = json.loads(line.split("facetrail-checkpoint ", 1)[1])
    assert note == row.note and checkpoints.parse(note)[0].size == 5


def checkpoints_failing(session):
    from facetrail.governance import witnesses

    return witnesses.deliver_pending(session)


def test_the_server_warns_of_missing_triggers_and_checkpoints_while_running_and_at_shutdown(tmp_path, capfd):
    witness = tmp_path / "witness.log"
    settings = settings_for(tmp_path / "data", audit_witnesses=[f"file:{witness}"], audit_checkpoint_minutes=0.01)
    db = Database(settings.db_url)
    add_accounts(db)
    with db.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_log_no_delete"))
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200
        key_line = capfd.readouterr().err
        logged(db, 2)
        deadline = time.monotonic() + 20
        while not witness.exists() and time.monotonic() < deadline:  # the periodic checkpoint (0.6 s)
            time.sleep(0.2)
        assert witness.exists()
        logged(db, 1)
    assert "AUDIT LOG UNGUARDED" in key_line and "audit_log_no_delete" in key_line
    assert "audit signing key created" in key_line  # a new installation's first start makes the key
    held = checkpoints.parse(witness.read_text())
    with db.session() as session:
        assert auditguards.missing(session) == ["audit_log_no_delete"]
        result = audit.walk(session)
    assert held[-1].size == result.count and held[-1].root == result.head  # the shutdown checkpoint is current
