"""Watch notifications outside the app (issue 18, item 5): a hit is POSTed as JSON to the watch's
webhook (a local HTTP server) and emailed through SMTP (a local aiosmtpd server); neither carries a
face, an image or a page; webhook addresses are checked like every outbound address (private ones
only when FACETRAIL_FETCH_ALLOW lists them); a failed delivery is kept on the hit. SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from facetrail.governance import notify, watches
from facetrail.governance.actors import Actor
from facetrail.index import open_index
from facetrail.search import Searcher
from facetrail.store import Database
from facetrail.store.models import WatchHit

from .support import add_accounts, open_case

IVAN = Actor("ivan", "investigator", "test")
SUE = Actor("sue", "supervisor", "test")
WATCHED = "bill_gates"


class Receiver:
    """A local HTTP server that records every POST (path, headers, body) and answers `status`."""

    def __init__(self, status: int = 204) -> None:
        self.posts: list[tuple[str, dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append((self.path, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture
def db(settings):
    database = Database(settings.db_url)
    add_accounts(database)
    open_case(database, "T-1", members=("ivan", "sue"))
    return database


def descriptors(searcher, paths):
    return watches.template([p.read_bytes() for p in paths], searcher.faces_in)


def approved_watch(settings, db, searcher, paths, **kwargs) -> int:
    vectors, shas = descriptors(searcher, paths)
    with db.session() as session, session.begin():
        watch = watches.request(session, settings, IVAN, "T-1", vectors, shas, **kwargs)
        watches.approve(session, SUE, watch.id)
        return watch.id


def test_a_hit_is_posted_to_the_webhook_and_emailed_without_face_image_or_page(
        settings, db, engine, dev_images, receiver, mailbox):
    settings = settings.model_copy(update={"fetch_allow": f"127.0.0.1:{receiver.port}", "smtp_host": "127.0.0.1",
                                           "smtp_port": mailbox.port, "smtp_from": "alerts@facetrail.test",
                                           "public_url": "https://facetrail.test/"})
    searcher = Searcher(settings, db, open_index(settings, db), engine)
    paths = [d.path for d in dev_images if d.identity == WATCHED]
    watch_id = approved_watch(settings, db, searcher, paths[:3], webhook=receiver.url(), email="ivan@example.org")
    new, _ = descriptors(searcher, paths[5:6])
    [hit_id] = watches.WatchChecker(settings, db).check([501], [601], new)
    assert len(receiver.posts) == 1
    path, headers, body = receiver.posts[0]
    payload = json.loads(body)
    assert path == "/hook" and headers["Content-Type"] == "application/json"
    assert payload["event"] == "watch.hit" and payload["watch_id"] == watch_id and payload["case_ref"] == "T-1"
    assert payload["hit_id"] == hit_id and payload["inbox"] == "https://facetrail.test/watches/inbox"
    assert set(payload) == {"event", "watch_id", "case_ref", "hit_id", "search_id", "at", "distance", "inbox"}
    assert len(mailbox.messages) == 1
    sender, recipients, text = mailbox.messages[0]
    assert sender == "alerts@facetrail.test" and recipients == ["ivan@example.org"]
    assert f"watch {watch_id}" in text and "https://facetrail.test/watches/inbox" in text
    assert WATCHED not in text and ".jpg" not in text and "601" not in text  # no image, no page, no file
    with db.session() as session:
        hit = session.get(WatchHit, hit_id)
        assert hit.delivery["webhook"]["state"] == "sent" and hit.delivery["email"]["state"] == "sent"


def test_webhooks_to_private_addresses_are_refused_unless_allowed_and_failures_are_kept(
        settings, db, engine, dev_images):
    searcher = Searcher(settings, db, open_index(settings, db), engine)
    paths = [d.path for d in dev_images if d.identity == WATCHED]
    failing = Receiver(status=500)
    try:
        for url in (failing.url(), "http://10.1.2.3/hook", "http://[::1]:9/x", "file:///etc/passwd",
                    "http://user:secret@example.org/x"):
            with pytest.raises(notify.NotifyRefused):
                approved_watch(settings, db, searcher, paths[:2], webhook=url)
        with pytest.raises(watches.WatchRefused, match="SMTP"):
            approved_watch(settings, db, searcher, paths[:2], email="ivan@example.org")
        allowed = settings.model_copy(update={"fetch_allow": f"127.0.0.1:{failing.port}"})
        approved_watch(allowed, db, searcher, paths[:2], webhook=failing.url())
        new, _ = descriptors(searcher, paths[6:7])
        [hit_id] = watches.WatchChecker(allowed, db).check([7], [8], new)
        assert len(failing.posts) == 1
    finally:
        failing.close()
    with db.session() as session:
        hit = session.scalar(select(WatchHit).where(WatchHit.id == hit_id))
        assert hit.state == "shown" and hit.delivery["webhook"]["state"] == "failed"
        assert "HTTP 500" in hit.delivery["webhook"]["error"]
