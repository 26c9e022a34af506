"""opt-out by several photos (one record per person), pending removals, daily totals only

Revision ID: 0014
Revises: 0013

An opt-out holds every descriptor of the person (`photos` rows in `embedding`), the model that
made them, and when its matching faces were removed (`applied_at`; None while pending). The
count of faces an opt-out removed is no longer kept per person (it told whether that person
was indexed): earlier counts move into `opt_out_days`, the totals per day.
"""

from collections import defaultdict

from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('opt_outs', sa.Column('photos', sa.Integer(), server_default='1', nullable=False))
    op.add_column('opt_outs', sa.Column('model', sa.String(length=64), nullable=True))
    op.add_column('opt_outs', sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True))
    days = op.create_table(
        'opt_out_days',
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.Column('opt_outs', sa.Integer(), nullable=False),
        sa.Column('faces_removed', sa.Integer(), nullable=False),
        sa.Column('faces_hidden', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('day'),
    )
    conn = op.get_bind()
    totals = defaultdict(lambda: [0, 0])
    for created_at, removed in conn.execute(sa.text('SELECT created_at, faces_removed FROM opt_outs')):
        day = str(created_at)[:10]  # a datetime, or ISO text on SQLite
        totals[day][0] += 1
        totals[day][1] += removed or 0
    if totals:
        op.bulk_insert(days, [{'day': d, 'opt_outs': n, 'faces_removed': r, 'faces_hidden': 0}
                              for d, (n, r) in sorted(totals.items())])
    conn.execute(sa.text('UPDATE opt_outs SET applied_at = created_at, faces_removed = 0'))


def downgrade() -> None:
    op.drop_table('opt_out_days')
    with op.batch_alter_table('opt_outs') as batch:
        batch.drop_column('applied_at')
        batch.drop_column('model')
        batch.drop_column('photos')
