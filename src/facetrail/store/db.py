"""Database connection: SQLite (WAL) in the data folder by default, PostgreSQL by URL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.orm import Session, sessionmaker

from .. import interrupts
from .private import create_private_file, make_private_dir, sqlite_path

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def write_lock(session: Session, table: str) -> None:
    """On SQLite, take the database's write lock for this transaction now, before reading what
    the write depends on: SQLite ignores SELECT ... FOR UPDATE and starts a transaction only at
    its first write, so a check read earlier could be stale by the time the write waits its turn.
    (PostgreSQL: row locks or advisory locks do this; nothing here.)"""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text(f"UPDATE {table} SET id = id WHERE 0"))  # a write of no row


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path is not None:  # created private (0600 in a 0700 folder) before SQLite opens it
            make_private_dir(path.parent)
            create_private_file(path)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config(engine: Engine):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def newest_revision() -> str:
    """The newest migration's revision: migrations are numbered, and named after their number."""
    return max(path.name.split("_", 1)[0] for path in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def transactional_sqlite(url) -> Engine:
    """An SQLite engine whose transactions hold DDL too: the driver begins nothing itself and every
    transaction is BEGIN IMMEDIATE (it takes the write lock at once). Python's sqlite3 would
    otherwise commit before each CREATE or ALTER, so a process killed in the middle of a migration
    left tables without the revision that made them, and every later start failed on them."""
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, record) -> None:
        _sqlite_pragmas(dbapi_connection, record)  # before any transaction: WAL cannot change inside one
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema up to the newest migration (idempotent), all pending migrations in one
    transaction on either database: they land together or not at all. Alembic (~0.4 s to import)
    is only loaded when there is something to do."""
    if current_revision(engine) == newest_revision():
        return
    from alembic import command

    if engine.dialect.name != "sqlite":
        command.upgrade(alembic_config(engine), "head")
        return
    migrating = transactional_sqlite(engine.url)
    try:
        command.upgrade(alembic_config(migrating), "head")
    finally:
        migrating.dispose()


class _Session(Session):
    """A session that holds a Ctrl-C back while open, in commands that ask for it (interrupts.py)."""

    def __enter__(self) -> _Session:
        interrupts.session_opened()
        return super().__enter__()

    def __exit__(self, *exc) -> None:
        try:
            super().__exit__(*exc)
        finally:
            interrupts.session_closed()


class Database:
    """An engine with its schema migrated, and a session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        migrate(self.engine)
        self.sessions = sessionmaker(self.engine, class_=_Session, expire_on_commit=False)

    def session(self) -> Session:
        return self.sessions()

    def close(self) -> None:
        self.engine.dispose()
