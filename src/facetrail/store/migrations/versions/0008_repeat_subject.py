"""repeat subject

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 08:08:40.325142
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('query_embeddings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('search_id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('case_ref', sa.String(length=200), nullable=False),
    sa.Column('embedding', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['search_id'], ['audit_log.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('search_id')
    )
    with op.batch_alter_table('query_embeddings', schema=None) as batch_op:
        batch_op.create_index('ix_query_embeddings_user_created', ['username', 'created_at'], unique=False)

    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('note', sa.Text(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.drop_column('note')

    with op.batch_alter_table('query_embeddings', schema=None) as batch_op:
        batch_op.drop_index('ix_query_embeddings_user_created')

    op.drop_table('query_embeddings')
