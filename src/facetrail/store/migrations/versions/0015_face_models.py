"""face models: faces.model indexed (one model per index), face_vectors for re-embedding

Revision ID: 0015
Revises: 0014

`faces.model` names the registry model (faces/registry.py) that made each descriptor; it
existed before. Its index lets `index.check_model` tell at once whether any face of another
model than the active one is stored. `face_vectors` holds descriptors by another model made by
`facetrail reembed` until the switch moves them into `faces`.
"""

from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_faces_model', 'faces', ['model'])
    op.create_table(
        'face_vectors',
        sa.Column('face_id', sa.Integer(), nullable=False),
        sa.Column('model', sa.String(length=64), nullable=False),
        sa.Column('embedding', sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(['face_id'], ['faces.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('face_id', 'model'),
    )


def downgrade() -> None:
    op.drop_table('face_vectors')
    op.drop_index('ix_faces_model', table_name='faces')
