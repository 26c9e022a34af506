"""face model per vector: faces.model indexed, so the index can hold one model's vectors only

Revision ID: 0015
Revises: 0014

`faces.model` names the registry model (faces/registry.py) that made each descriptor; it
existed before. The index lets `index.check_model` tell at once whether any face of another
model than the active one is stored.
"""

from alembic import op
import sqlalchemy as sa  # noqa: F401


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_faces_model', 'faces', ['model'])


def downgrade() -> None:
    op.drop_index('ix_faces_model', table_name='faces')
