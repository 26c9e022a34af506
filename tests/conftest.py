"""Shared fixtures: the dev photo set, databases (SQLite and PostgreSQL), the face engine,
and a dev-set index built once per test run."""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from facetrail.config import Settings
from facetrail.faces import FaceEngine, load_engine
from facetrail.index import open_index
from facetrail.ingest import Ingestor, Summary, walk
from facetrail.ingest.sources import folder_source
from facetrail.governance.actors import Actor
from facetrail.store import Database, User

# The tests search far more often, and for the same people more often, than a person would:
# rate limits and repeat-subject holds get their own tests.
os.environ["FACETRAIL_SEARCH_LIMITS"] = '{"investigator": {"hour": 100000}, "supervisor": {"hour": 100000}}'
os.environ["FACETRAIL_REPEAT_SUBJECT_COUNT"] = "100000"

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "faces" / "dev"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class DevImage:
    path: Path
    identity: str  # a person, "none" (no person) or "unknown" (unlabelled people)

    @property
    def labelled(self) -> bool:
        return self.identity not in ("none", "unknown")


@pytest.fixture(scope="session")
def dev_images() -> list[DevImage]:
    manifest = DEV / "manifest.csv"
    if not manifest.is_file():
        pytest.fail(f"dev photos not found at {DEV} (the repository expects ../shared beside it)")
    with manifest.open() as handle:
        return [DevImage(DEV / row["path"], row["identity"]) for row in csv.DictReader(handle)]


def settings_for(data_dir: Path, **extra) -> Settings:
    return Settings(data_dir=data_dir, workers=2, **extra)


def cli_base(settings: Settings) -> list[str]:
    """Command-line options that point `facetrail` at these settings' data folder and database."""
    base = ["--data-dir", str(settings.data_dir)]
    return base + (["--database-url", settings.database_url] if settings.database_url else [])


# FACETRAIL_TEST_DB=postgresql runs the shared dev-set index (and every test built on it) on PostgreSQL.
TEST_DB = os.environ.get("FACETRAIL_TEST_DB", "sqlite")


@pytest.fixture(scope="session")
def engine() -> FaceEngine:
    return load_engine(Settings())


def _postgres_database() -> Iterator[str]:
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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'facetrail.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def settings(tmp_path, db_url) -> Settings:
    return settings_for(tmp_path / "data", database_url=db_url)


PASSWORD = "correct horse battery"
SEARCH_ARGS = ["--purpose", "source-verification", "--justification", "testing", "--case", "T-1"]
SEARCH_FORM = {"purpose": "source-verification", "justification": "testing", "case_ref": "T-1"}


@dataclass
class DevIndex:
    settings: Settings
    db: Database
    summary: Summary
    tokens: dict[str, str]  # username -> API token


def add_accounts(db: Database) -> dict[str, str]:
    """ada (admin), sue (supervisor), ivan and iris (investigators), otto (auditor), all with
    PASSWORD already set; returns an API token for each."""
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
    return tokens


@pytest.fixture(scope="session")
def dev_database() -> Iterator[str | None]:
    if TEST_DB == "postgresql":
        yield from _postgres_database()
    else:
        yield None  # SQLite in the data folder


@pytest.fixture(scope="session")
def dev_index(tmp_path_factory, dev_images, dev_database) -> DevIndex:
    """The whole dev set, ingested once per test run (FAISS + SQLite, or PostgreSQL), with accounts."""
    settings = settings_for(tmp_path_factory.mktemp("dev-index"), database_url=dev_database)
    db = Database(settings.db_url)
    index = open_index(settings, db)
    summary = folder_ingestor(settings, db, index, DEV).run(walk([DEV]))
    return DevIndex(settings, db, summary, add_accounts(db))


LEGAL_BASIS = "labelled test photographs, used with permission for testing"


def folder_ingestor(settings, db, index, *paths) -> Ingestor:
    """An Ingestor for the folder source holding `paths` (declared by the admin if needed)."""
    with db.session() as session, session.begin():
        source = folder_source(session, Actor("ada", "admin", "test"), list(paths), LEGAL_BASIS)
    return Ingestor(settings, db, index, source)


def investigator() -> Actor:
    return Actor("ivan", "investigator", "test")
