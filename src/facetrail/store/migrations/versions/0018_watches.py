"""watches: standing searches bound to a case, and their hits

Revision ID: 0018
Revises: 0017
"""

from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('watches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('template', sa.LargeBinary(), nullable=False),
    sa.Column('photos', sa.Integer(), nullable=False),
    sa.Column('photo_sha256', sa.JSON(), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('webhook_url', sa.String(length=2000), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('approved_by', sa.String(length=64), nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stopped_by', sa.String(length=64), nullable=True),
    sa.Column('stopped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('watches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_watches_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_watches_owner_id'), ['owner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_watches_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_watches_changed_at'), ['changed_at'], unique=False)
    op.create_table('watch_hits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('watch_id', sa.Integer(), nullable=False),
    sa.Column('face_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('distance', sa.Float(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('search_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('shown_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivery', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['search_id'], ['audit_log.id'], ),
    sa.ForeignKeyConstraint(['watch_id'], ['watches.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('watch_id', 'face_id')
    )
    with op.batch_alter_table('watch_hits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_watch_hits_watch_id'), ['watch_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_watch_hits_state'), ['state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('watch_hits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_watch_hits_state'))
        batch_op.drop_index(batch_op.f('ix_watch_hits_watch_id'))
    op.drop_table('watch_hits')
    with op.batch_alter_table('watches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_watches_changed_at'))
        batch_op.drop_index(batch_op.f('ix_watches_status'))
        batch_op.drop_index(batch_op.f('ix_watches_owner_id'))
        batch_op.drop_index(batch_op.f('ix_watches_case_id'))
    op.drop_table('watches')
