"""descriptors per face model: opt_out_vectors, watch_vectors, query_embeddings.model

Revision ID: 0019
Revises: 0018

An opt-out and a watch keep their descriptors by every registered face model (one row per
model: faces/templates.py), so a model switch (`facetrail reembed`) keeps them working. The
existing ones hold one model's: they are copied from `opt_outs.embedding` (a NULL model is
dlib_resnet_v1, the only model before 0014 recorded it) and `watches.template`, and a switch to
another model stays refused while such an opt-out exists. A repeat-subject descriptor names its
model (descriptors of different models are never compared): that of its search's audit entry,
else dlib_resnet_v1.
"""

from alembic import op
import sqlalchemy as sa


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

LEGACY_MODEL = 'dlib_resnet_v1'


def upgrade() -> None:
    op.create_table('opt_out_vectors',
    sa.Column('opt_out_id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('embedding', sa.LargeBinary(), nullable=False),
    sa.Column('photos', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['opt_out_id'], ['opt_outs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('opt_out_id', 'model')
    )
    op.create_index(op.f('ix_opt_out_vectors_model'), 'opt_out_vectors', ['model'], unique=False)
    op.create_table('watch_vectors',
    sa.Column('watch_id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('embedding', sa.LargeBinary(), nullable=False),
    sa.Column('photos', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['watch_id'], ['watches.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('watch_id', 'model')
    )
    op.create_index(op.f('ix_watch_vectors_model'), 'watch_vectors', ['model'], unique=False)
    op.execute(f"INSERT INTO opt_out_vectors (opt_out_id, model, embedding, photos) "
               f"SELECT id, COALESCE(model, '{LEGACY_MODEL}'), embedding, photos FROM opt_outs")
    op.execute("INSERT INTO watch_vectors (watch_id, model, embedding, photos) "
               "SELECT id, model, template, photos FROM watches")

    op.add_column('query_embeddings', sa.Column('model', sa.String(length=64), nullable=True))
    queries = sa.table('query_embeddings', sa.column('id', sa.Integer), sa.column('search_id', sa.Integer),
                       sa.column('model', sa.String))
    entries = sa.table('audit_log', sa.column('id', sa.Integer), sa.column('details', sa.JSON))
    conn = op.get_bind()
    for query_id, details in conn.execute(sa.select(queries.c.id, entries.c.details)
                                          .join(entries, entries.c.id == queries.c.search_id)).all():
        model = (details or {}).get('model') or LEGACY_MODEL
        conn.execute(queries.update().where(queries.c.id == query_id).values(model=model))
    conn.execute(queries.update().where(queries.c.model.is_(None)).values(model=LEGACY_MODEL))
    with op.batch_alter_table('query_embeddings', schema=None) as batch_op:
        batch_op.alter_column('model', existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('query_embeddings', schema=None) as batch_op:
        batch_op.drop_column('model')
    op.drop_index(op.f('ix_watch_vectors_model'), table_name='watch_vectors')
    op.drop_table('watch_vectors')
    op.drop_index(op.f('ix_opt_out_vectors_model'), table_name='opt_out_vectors')
    op.drop_table('opt_out_vectors')
