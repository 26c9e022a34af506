"""declared sources and web appearances

Every location now belongs to a source. Locations stored before sources existed are given to
a folder source named "legacy" (its legal basis says so; edit it with care).

Revision ID: 0009
Revises: 0008
"""

from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('scope', sa.JSON(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('legal_basis', sa.Text(), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('appearances',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('page_url', sa.String(length=2048), nullable=False),
    sa.Column('canonical_url', sa.String(length=2048), nullable=True),
    sa.Column('page_title', sa.Text(), nullable=False),
    sa.Column('image_url', sa.String(length=2048), nullable=False),
    sa.Column('alt', sa.Text(), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('gone', sa.Boolean(), nullable=False),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_id', 'key')
    )
    with op.batch_alter_table('appearances', schema=None) as batch_op:
        batch_op.create_index('ix_appearances_source_image_url', ['source_id', 'image_url'], unique=False)
        batch_op.create_index('ix_appearances_source_page_url', ['source_id', 'page_url'], unique=False)

    bind = op.get_bind()
    legacy = None
    if bind.execute(sa.text("SELECT count(*) FROM locations")).scalar():
        sources = sa.table('sources', *(sa.column(c) for c in (
            'name', 'kind', 'scope', 'options', 'legal_basis', 'owner', 'status', 'created_at')),
            sa.column('scope', sa.JSON()), sa.column('options', sa.JSON()))
        op.bulk_insert(sources, [{
            'name': 'legacy', 'kind': 'folder', 'scope': {'paths': []}, 'options': {},
            'legal_basis': 'files indexed before sources were recorded (no legal basis on record)',
            'owner': 'system', 'status': 'active', 'created_at': datetime.now(UTC)}])
        legacy = bind.execute(sa.text("SELECT id FROM sources WHERE name = 'legacy'")).scalar()

    with op.batch_alter_table('locations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('status', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('gone', sa.Boolean(), nullable=False, server_default=sa.false()))
    if legacy is not None:
        op.execute(sa.text("UPDATE locations SET source_id = :id").bindparams(id=legacy))
    # SQLite's unique constraint on location has no name: the naming convention gives it one.
    unique = 'locations_location_key' if bind.dialect.name == 'postgresql' else 'uq_locations_location'
    with op.batch_alter_table('locations', schema=None,
                              naming_convention={'uq': 'uq_%(table_name)s_%(column_0_name)s'}) as batch_op:
        batch_op.alter_column('source_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('gone', existing_type=sa.Boolean(), server_default=None)
        batch_op.drop_constraint(unique, type_='unique')
        batch_op.create_unique_constraint('uq_locations_source_id_location', ['source_id', 'location'])
        batch_op.create_foreign_key('fk_locations_source_id', 'sources', ['source_id'], ['id'],
                                    ondelete='CASCADE')


def downgrade() -> None:
    raise NotImplementedError("0009 (sources) cannot be downgraded: locations now belong to sources")
