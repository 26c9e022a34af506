"""Shared fixtures: the dev photo set, databases (SQLite and PostgreSQL), the face engine,
and a dev-set index built once per test run. Helpers the tests share are in support.py."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator

import pytest

from facetrail.config import Settings
from facetrail.faces import FaceEngine, load_engine
from facetrail.index import open_index
from facetrail.ingest import walk
from facetrail.store import Database

from .support import DEV, DevImage, DevIndex, add_accounts, folder_ingestor, postgres_database, settings_for

# The tests search far more often, and for the same people more often, than a person would:
# rate limits and repeat-subject holds get their own tests.
os.environ["FACETRAIL_SEARCH_LIMITS"] = '{"investigator": {"hour": 100000}, "supervisor": {"hour": 100000}}'
os.environ["FACETRAIL_REPEAT_SUBJECT_COUNT"] = "100000"

# FACETRAIL_TEST_DB=postgresql runs the shared dev-set index (and every test built on it) on PostgreSQL.
TEST_DB = os.environ.get("FACETRAIL_TEST_DB", "sqlite")


@pytest.fixture(scope="session")
def dev_images() -> list[DevImage]:
    manifest = DEV / "manifest.csv"
    if not manifest.is_file():
        pytest.fail(f"dev photos not found at {DEV} (the repository expects ../shared beside it)")
    with manifest.open() as handle:
        return [DevImage(DEV / row["path"], row["identity"]) for row in csv.DictReader(handle)]


@pytest.fixture(scope="session")
def engine() -> FaceEngine:
    return load_engine(Settings())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'facetrail.db'}"
    else:
        yield from postgres_database()


@pytest.fixture
def settings(tmp_path, db_url) -> Settings:
    return settings_for(tmp_path / "data", database_url=db_url)


@pytest.fixture(scope="session")
def dev_database() -> Iterator[str | None]:
    if TEST_DB == "postgresql":
        yield from postgres_database()
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
