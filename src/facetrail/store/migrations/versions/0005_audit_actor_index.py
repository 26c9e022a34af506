"""index audit entries by actor, action and time (rate limits count recent searches)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_log_actor_action_created", "audit_log", ["actor", "action", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_actor_action_created", "audit_log")
