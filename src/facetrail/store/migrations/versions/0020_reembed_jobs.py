"""reembed_jobs: `facetrail reembed --background`, run by a `facetrail worker` under a lease

Revision ID: 0020
Revises: 0019
"""

from alembic import op
import sqlalchemy as sa


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reembed_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('actor', sa.JSON(), nullable=False),
    sa.Column('batch', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=128), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('described', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('reembed_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reembed_jobs_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('reembed_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reembed_jobs_status'))
    op.drop_table('reembed_jobs')
