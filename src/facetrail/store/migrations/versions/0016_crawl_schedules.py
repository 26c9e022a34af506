"""conditional re-crawl validators: fetch_validators (ETag / Last-Modified of a source's image URLs)

Revision ID: 0016
Revises: 0015

A re-crawl asks for each image it stored before with If-None-Match / If-Modified-Since; a 304
answer costs no download (first/last seen are still updated). Crawl schedules need no table: a
source's `every` option and its `last_run_at` say when it is due.
"""

from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'fetch_validators',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source_id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('url', sa.String(length=2048), nullable=False),
        sa.Column('etag', sa.String(length=512), nullable=True),
        sa.Column('last_modified', sa.String(length=64), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source_id', 'key'),
    )


def downgrade() -> None:
    op.drop_table('fetch_validators')
