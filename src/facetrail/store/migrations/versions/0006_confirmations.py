"""confirmations

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 07:55:39.229662
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('confirmations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_ref', sa.String(length=200), nullable=False),
    sa.Column('face_id', sa.Integer(), nullable=False),
    sa.Column('search_id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['search_id'], ['audit_log.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_ref', 'face_id', 'username')
    )
    with op.batch_alter_table('confirmations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_confirmations_case_ref'), ['case_ref'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('confirmations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_confirmations_case_ref'))

    op.drop_table('confirmations')
