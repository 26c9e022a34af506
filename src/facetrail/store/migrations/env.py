"""Alembic environment: the engine is handed over by facetrail.store.db.migrate."""

from alembic import context
from sqlalchemy import text

from facetrail.store.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    if connection.dialect.name == "postgresql":  # processes starting together migrate one at a time
        connection.execute(text("SELECT pg_advisory_xact_lock(7010002)"))
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
