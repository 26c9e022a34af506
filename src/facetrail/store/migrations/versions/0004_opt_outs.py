"""opt outs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 07:44:44.449856
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('opt_outs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('embedding', sa.LargeBinary(), nullable=False),
    sa.Column('contact', sa.String(length=320), nullable=True),
    sa.Column('faces_removed', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('opt_outs')
