"""Client addresses cannot be spoofed (issue 12, item 9): X-Forwarded-For and
X-Forwarded-Proto are believed only from the reverse proxies listed in
FACETRAIL_TRUSTED_PROXIES (default: none).

The first test runs the real server (`facetrail serve`, uvicorn) on loopback, as the attack
did: a client on the same machine sends a new X-Forwarded-For with every opt-out request.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from facetrail.store import AuditEntry, Database
from facetrail.web import create_app

from .support import image_bytes, settings_for, upload

FACETRAIL = Path(sys.executable).with_name("facetrail")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(data_dir: Path, **env: str):
    """`facetrail serve` on a free loopback port with extra FACETRAIL_* settings; yields its URL."""
    port = free_port()
    environment = {**os.environ, **{f"FACETRAIL_{k.upper()}": v for k, v in env.items()}}
    server = subprocess.Popen([str(FACETRAIL), "--data-dir", str(data_dir), "serve", "--port", str(port)],
                              env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # until it answers (loading the face model takes a while)
            if server.poll() is not None:
                pytest.fail(f"facetrail serve stopped: {server.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("facetrail serve did not start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def opt_out(url: str, forwarded_for: str) -> int:
    """An opt-out request (refused for its missing statement, but counted by the rate limit first)."""
    answer = httpx.post(f"{url}/api/v1/opt-out", files=upload(image_bytes("red")), data={"statement": ""},
                        headers={"X-Forwarded-For": forwarded_for}, timeout=30)
    assert answer.json()["code"] in ("statement_required", "rate_limited") or answer.status_code == 422
    return answer.status_code


def test_a_loopback_client_cannot_escape_the_opt_out_limit_with_x_forwarded_for(tmp_path):
    with served(tmp_path / "data", opt_out_per_hour="2") as url:
        statuses = [opt_out(url, f"198.51.100.{n}") for n in range(4)]
    assert statuses[:2] == [422, 422] and statuses[2:] == [429, 429]
    # with the loopback proxy trusted, the forwarded address is the client's: each has its own limit ...
    with served(tmp_path / "data", opt_out_per_hour="2", trusted_proxies="127.0.0.1") as url:
        assert [opt_out(url, f"198.51.100.{n}") for n in range(4)] == [422] * 4
        assert [opt_out(url, "192.0.2.1") for _ in range(3)] == [422, 422, 429]
        # ... and what a client writes itself, left of what the proxy added, is never believed
        assert opt_out(url, "10.1.1.1, 192.0.2.1") == 429
        assert opt_out(url, "192.0.2.1, 127.0.0.1") == 429  # a trusted hop is skipped


@pytest.mark.parametrize("trusted", [[], ["127.0.0.1", "10.0.0.0/8"]])
def test_sign_in_records_the_believed_address_and_the_cookie_follows_the_believed_scheme(tmp_path, db_url, trusted):
    settings = settings_for(tmp_path, database_url=db_url, trusted_proxies=trusted)
    db = Database(settings.db_url)
    with TestClient(create_app(settings), client=("127.0.0.1", 50000), follow_redirects=False) as client:
        form = client.get("/login", headers={"X-Forwarded-Proto": "https"})
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        cookie = form.headers["set-cookie"]
        client.cookies.clear()  # a Secure cookie is not sent back over http: send it as the browser would
        client.cookies.set("ft_login_csrf", token)
        client.post("/login", data={"username": "nobody", "password": "guess", "csrf_token": token},
                    headers={"X-Forwarded-For": "203.0.113.50, 10.2.3.4"})
    with db.session() as session:
        [failed] = session.scalars(select(AuditEntry.details).where(AuditEntry.action == "login.failed"))
    if trusted:  # 10.2.3.4 is a trusted proxy too: the client is the address it received the request from
        assert failed["client"] == "203.0.113.50" and "secure" in cookie.lower()
    else:
        assert failed["client"] == "127.0.0.1" and "secure" not in cookie.lower()


def test_bad_trusted_proxy_settings_are_refused_at_start(tmp_path):
    result = subprocess.run([str(FACETRAIL), "--data-dir", str(tmp_path), "stats"], capture_output=True, text=True, check=False,
                            env={**os.environ, "FACETRAIL_TRUSTED_PROXIES": "127.0.0.1, proxy.example.org"})
    assert result.returncode == 2 and "proxy.example.org" in result.stdout + result.stderr
