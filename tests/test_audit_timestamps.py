"""Optional RFC 3161 timestamps on checkpoints, from a real local time-stamping authority:
`openssl ts -reply` behind an HTTP server on 127.0.0.1, with its own CA. The token rides in the
checkpoint as a signature line, so witnesses keep it; `audit verify --tsa-root` checks it, and
a checkpoint whose text changed no longer matches its timestamp."""

from __future__ import annotations

import subprocess
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facetrail.cli import app
from facetrail.governance import audit, checkpoints, timestamps
from facetrail.governance.actors import Actor
from facetrail.store import Database

from .support import add_accounts, as_user, cli_base, settings_for

TSA_CONFIG = """
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.crt
certs = $dir/tsa.crt
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha512
accuracy = secs:1
ordering = yes
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
[ tsa_ext ]
extendedKeyUsage = critical,timeStamping
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
"""


def openssl(*args, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tsa(tmp_path):
    """(URL, root certificate PEM) of a local TSA; its log of requests answered."""
    where = tmp_path / "tsa"
    where.mkdir()
    (where / "tsa.cnf").write_text(TSA_CONFIG.format(dir=where))
    (where / "serial").write_text("01\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=facetrail test TSA root", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign", cwd=where)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr",
            "-subj", "/CN=facetrail test TSA", cwd=where)
    openssl("x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "tsa.crt", "-days", "2", "-extfile", "tsa.cnf", "-extensions", "tsa_ext", cwd=where)
    answered = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            query = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:  # openssl ts keeps a serial file
                (where / "q.tsq").write_bytes(query)
                openssl("ts", "-reply", "-config", "tsa.cnf", "-queryfile", "q.tsq", "-out", "r.tsr", cwd=where)
                reply = (where / "r.tsr").read_bytes()
            answered.append(self.headers["Content-Type"])
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tsr", (where / "ca.crt"), answered
    server.shutdown()
    server.server_close()


def test_checkpoints_carry_a_tsa_timestamp_that_verifies_and_binds_their_text(tmp_path, tsa):
    url, root, answered = tsa
    data = tmp_path / "data"
    data.mkdir()
    (data / "facetrail.toml").write_text(f'audit_tsa_url = "{url}"\n')
    settings = settings_for(data)
    db = Database(settings.db_url)
    add_accounts(db)
    with db.session() as session, session.begin():
        audit.record(session, Actor("ivan", "investigator", "test"), "search", "trust-and-safety", case_ref="TS-1")
    checkpoints.ensure_key(settings)
    runner = CliRunner()
    made = runner.invoke(app, [*cli_base(settings), "audit", "checkpoint"], catch_exceptions=False)
    assert made.exit_code == 0 and answered == ["application/timestamp-query"]
    note = checkpoints.parse(made.stdout)[0]
    when = checkpoints.timestamp(note, root.read_bytes())
    assert abs(when.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=2)
    verifier = checkpoints.Verifier.of(settings, checkpoints.load_key(settings))
    assert checkpoints.signed_by(note, verifier)  # the extra line does not disturb the signature

    (tmp_path / "cp").write_text(made.stdout)
    checked = runner.invoke(app, [*cli_base(settings), *as_user(settings, "otto"), "audit", "verify",
                                  "--checkpoint", str(tmp_path / "cp"), "--tsa-root", str(root)])
    assert checked.exit_code == 0 and "timestamped by the TSA at" in checked.stdout, checked.output

    token = timestamps.token_in(note.note)
    changed = note.body.replace("\n1\n", "\n2\n", 1) if "\n1\n" in note.body else note.body + "x"
    with pytest.raises(timestamps.TimestampError):
        timestamps.verify(token, changed.encode(), root.read_bytes())
    other_root = tmp_path / "other.crt"  # a root the TSA does not chain to
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "o.key", "-out", str(other_root),
            "-days", "1", "-subj", "/CN=someone else", cwd=tmp_path)
    with pytest.raises(timestamps.TimestampError):
        timestamps.verify(token, note.body.encode(), other_root.read_bytes())


def test_a_checkpoint_is_signed_even_when_the_tsa_is_down(tmp_path, caplog):
    settings = settings_for(tmp_path / "data", audit_tsa_url="http://127.0.0.1:9/tsr")  # discard port: nothing
    db = Database(settings.db_url)
    with db.session() as session, session.begin():
        row = checkpoints.make(session, settings, checkpoints.ensure_key(settings)[0])
    assert timestamps.token_in(row.note) is None and checkpoints.parse(row.note)[0].size == 0
    assert "without a trusted timestamp" in caplog.text
