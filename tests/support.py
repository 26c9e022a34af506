"""Helpers the tests share (fixtures live in conftest.py; tests import helpers from here only).

- the dev photo set, settings, the CLI's options, a fresh PostgreSQL database;
- accounts, the folder source, signing in to the web app;
- test photos: a dev photo by identity, two faces side by side, uploads, hostile files;
- face-like vectors for index tests;
- a tiny local web: HTTP servers on 127.0.0.1 ephemeral ports (one per "host"), each serving
  a route table and logging every request it receives.
"""

from __future__ import annotations

import io
import re
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import create_engine, select, text

from facetrail.config import Settings
from facetrail.governance.actors import Actor
from facetrail.ingest import Ingestor, Summary
from facetrail.ingest.sources import folder_source
from facetrail.store import Database, User

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "faces" / "dev"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

PASSWORD = "correct horse battery"
SEARCH_ARGS = ["--purpose", "source-verification", "--justification", "testing", "--case", "T-1"]
SEARCH_FORM = {"purpose": "source-verification", "justification": "testing", "case_ref": "T-1"}
LEGAL_BASIS = "labelled test photographs, used with permission for testing"


# --- the dev photos, settings and databases ---------------------------------------------------


@dataclass(frozen=True)
class DevImage:
    path: Path
    identity: str  # a person, "none" (no person) or "unknown" (unlabelled people)

    @property
    def labelled(self) -> bool:
        return self.identity not in ("none", "unknown")


@dataclass
class DevIndex:
    settings: Settings
    db: Database
    summary: Summary
    tokens: dict[str, str]  # username -> API token


def settings_for(data_dir: Path, **extra) -> Settings:
    return Settings(data_dir=data_dir, workers=2, **extra)


def cli_base(settings: Settings) -> list[str]:
    """Command-line options that point `facetrail` at these settings' data folder and database."""
    base = ["--data-dir", str(settings.data_dir)]
    return base + (["--database-url", settings.database_url] if settings.database_url else [])


def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL), dropped afterwards: `yield from` it in a fixture."""
    name = f"facetrail_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- accounts, sources, signing in ------------------------------------------------------------


def add_accounts(db: Database, case: str | None = "T-1") -> dict[str, str]:
    """ada (admin), sue (supervisor), ivan and iris (investigators), otto (auditor), all with
    PASSWORD already set, and an open case `case` (for source verification) with ivan, iris and
    sue as members; returns an API token for each account."""
    from facetrail.governance.accounts import change_password, create_token, create_user

    tokens = {}
    with db.session() as session, session.begin():
        for name, role in [("ada", "admin"), ("sue", "supervisor"), ("ivan", "investigator"),
                           ("iris", "investigator"), ("otto", "auditor")]:
            user, one_time = create_user(session, None, name, role)
            change_password(session, user, one_time, PASSWORD)
        admin = Actor.of(session.scalar(select(User).where(User.username == "ada")), "cli")
        for name in ("ada", "sue", "ivan", "iris", "otto"):
            tokens[name] = create_token(session, admin, name, "tests")[1]
    ACCOUNT_TOKENS[db.url] = tokens
    if case:
        open_case(db, case)
    return tokens


def open_case(db: Database, ref: str = "T-1", members=("ivan", "iris", "sue"),
              purpose: str = "source-verification") -> None:
    """Open case `ref` (authorised by a court, for a month) as the supervisor sue, with `members`
    (accounts that exist already, e.g. from add_accounts; if the case is open already, the members
    missing are added). Searches name an open case their user is a member of."""
    from datetime import date, timedelta

    from facetrail.governance import cases

    sue = Actor("sue", "supervisor", "test")
    with db.session() as session, session.begin():
        try:
            case = cases.get(session, ref)  # opened already (add_accounts opens T-1): add the members missing
        except cases.CaseNotFound:
            cases.open_case(session, sue, ref=ref, title=f"test case {ref}", purpose=purpose,
                            purposes=Settings().purposes,
                            authorisation=cases.Authorisation("Test court", "TC-1", date.today()),
                            expires_on=date.today() + timedelta(days=30), members=list(members))
            return
        for name in set(members) - set(cases.members(session, case)):
            cases.add_member(session, sue, ref, name)


def folder_ingestor(settings, db, index, *paths) -> Ingestor:
    """An Ingestor for the folder source holding `paths` (declared by the admin if needed)."""
    with db.session() as session, session.begin():
        source = folder_source(session, Actor("ada", "admin", "test"), list(paths), LEGAL_BASIS)
    return Ingestor(settings, db, index, source)


def investigator() -> Actor:
    return Actor("ivan", "investigator", "test")


def login(client, username, password=PASSWORD):
    """Sign in through the login form (with its CSRF token) and return the session's CSRF token."""
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                           follow_redirects=False)
    assert response.status_code == 303, response.text
    page = client.get("/")
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


# --- test photos ------------------------------------------------------------------------------


def photo_of(dev_images, identity, n=0) -> Path:
    return [d for d in dev_images if d.identity == identity][n].path


def pair_photo(dev_images, left_identity="anthony_hopkins", right_identity="bill_gates") -> bytes:
    """Two dev photos side by side; the left one larger, so it is face 0 and the right one face 1."""
    left = Image.open(photo_of(dev_images, left_identity)).convert("RGB")
    right = Image.open(photo_of(dev_images, right_identity)).convert("RGB")
    right.thumbnail((int(left.width * 0.8), int(left.height * 0.8)))
    both = Image.new("RGB", (left.width + right.width + 20, left.height), "white")
    both.paste(left, (0, 0))
    both.paste(right, (left.width + 20, 0))
    buffer = io.BytesIO()
    both.save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def upload(data: bytes, name="photo.jpg"):
    return {"image": (name, data, "application/octet-stream")}


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1-bit PNG whose header claims width x height pixels (~100 KB on disk)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def write_hostile_files(folder: Path, good_jpeg: bytes) -> dict[str, str]:
    """Writes one file per kind of bad input; returns file name -> expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "empty.jpg": (b"", "empty"),
        "truncated.jpg": (good_jpeg[: len(good_jpeg) // 2], "truncated"),
        "corrupt.jpg": (good_jpeg[:200] + bytes(range(256)) * 20, "corrupt"),
        "text-renamed.jpg": (b"this is not a photo, just text\n" * 10, "not_an_image"),
        "bomb.png": (png_bomb(), "too_many_pixels"),
        "icon.ico": (encode(Image.new("RGB", (32, 32), "red"), "ICO"), "unsupported_format"),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items()}


def image_bytes(color: str, fmt: str = "JPEG", size: tuple[int, int] = (16, 16)) -> bytes:
    """A small real image."""
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


# --- face-like vectors ------------------------------------------------------------------------

DIM = 128


def faces(n: int, seed: int = 0, per_identity: int = 5) -> np.ndarray:
    """Face-like vectors: identities ~0.85 apart (different people), faces ~0.49 apart (same person),
    in a 90-d subspace around a common mean of norm ~1.36, like dlib descriptors."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((DIM, 90)))[0].T.astype(np.float32)  # 90 x 128
    mean = rng.standard_normal(DIM).astype(np.float32)
    mean *= 1.36 / np.linalg.norm(mean)
    n_ids = -(-n // per_identity)
    # decaying spectra like the dev set's (between-identity ~13 effective dimensions, within ~45)
    between = np.exp(-np.arange(90) / 12).astype(np.float32)
    within = np.exp(-np.arange(90) / 40).astype(np.float32)
    between *= 0.5 / np.linalg.norm(between)
    within *= 0.49 / np.sqrt(2) / np.linalg.norm(within)
    centres = rng.standard_normal((n_ids, 90)).astype(np.float32) * between
    who = rng.integers(0, n_ids, n)
    noise = rng.standard_normal((n, 90)).astype(np.float32) * within
    return ((centres[who] + noise) @ basis + mean).astype(np.float32)


# --- a tiny local web -------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    location: str | None = None  # answer 302 to this URL

    @staticmethod
    def html(text: str, **kwargs) -> Route:
        return Route(text.encode(), **kwargs)

    @staticmethod
    def image(data: bytes, content_type: str = "image/jpeg", **kwargs) -> Route:
        return Route(data, content_type=content_type, **kwargs)


@dataclass
class Site:
    """One server. `log` holds (Host header, path) of every request, in arrival order."""

    name: str  # the host name the tests use for it ("" to use 127.0.0.1)
    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    log: list[tuple[str, str]] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"{self.name or '127.0.0.1'}:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}{path}"

    def paths(self) -> list[str]:
        return [path for _, path in self.log]


class _Handler(BaseHTTPRequestHandler):
    site: Site

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.site.log.append((self.headers.get("Host", ""), self.path))
        route = self.site.routes.get(self.path, Route(b"not found", 404, "text/plain"))
        time.sleep(route.delay)
        try:
            self.send_response(302 if route.location else route.status)
            if route.location:
                self.send_header("Location", route.location)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(route.body)
        except OSError:  # the client gave up (deadline, size limit)
            pass


@contextmanager
def serve(*names: str) -> Iterator[list[Site]]:
    """Start one server per name on 127.0.0.1 (ephemeral ports); stop them on exit."""
    sites, servers = [], []
    for name in names:
        site = Site(name)
        handler = type("Handler", (_Handler,), {"site": site})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        site.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        sites.append(site)
        servers.append(server)
    try:
        yield sites
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


# --- acting from the command line ---------------------------------------------------------------

ACCOUNT_TOKENS: dict[str, dict[str, str]] = {}  # database URL -> username -> API token (add_accounts)


def as_user(where: Settings | Path | str, username: str | None) -> list[str]:
    """The command-line options that prove `username` (one of add_accounts'), by its API token, on
    the database of these settings (or of a data folder's SQLite); any other name is given as
    `--as NAME` alone, which proves nothing."""
    if username is None:
        return []
    settings = where if isinstance(where, Settings) else settings_for(Path(where))
    token = ACCOUNT_TOKENS.get(settings.db_url, {}).get(username)
    return ["--token", token] if token else ["--as", username]
