"""operating-system logins bound to accounts (acting from the command line needs proof)

Revision ID: 0012
Revises: 0011
"""

from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('os_logins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('login', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('login')
    )
    with op.batch_alter_table('os_logins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_os_logins_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('os_logins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_os_logins_user_id'))
    op.drop_table('os_logins')
