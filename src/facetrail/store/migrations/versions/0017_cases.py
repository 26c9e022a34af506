"""cases as records: authorisation, purpose, members, expiry; earlier free-text references become
incomplete cases for a supervisor to complete

Revision ID: 0017
Revises: 0016
"""

import json
from datetime import UTC, datetime, timedelta

from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    cases = op.create_table('cases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ref', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('authority', sa.String(length=255), nullable=True),
    sa.Column('authorisation_ref', sa.String(length=255), nullable=True),
    sa.Column('authorised_on', sa.Date(), nullable=True),
    sa.Column('urgent_due', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_on', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_by', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ref')
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_status'), ['status'], unique=False)
    members = op.create_table('case_members',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('added_by', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', 'user_id')
    )
    with op.batch_alter_table('case_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_members_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_members_user_id'), ['user_id'], unique=False)
    _cases_from_free_text(cases, members)


def _cases_from_free_text(cases, members) -> None:
    """Each distinct case reference of earlier searches becomes a case of status `incomplete`
    (purpose of its first search; its searchers as members) that refuses new searches until a
    supervisor completes it with the authorisation and an expiry date."""
    bind = op.get_bind()
    found: dict[str, dict] = {}
    rows = bind.execute(sa.text("SELECT actor, purpose, details, created_at FROM audit_log "
                                "WHERE action = 'search' ORDER BY id"))
    for actor, purpose, details, created_at in rows:
        details = json.loads(details) if isinstance(details, str) else (details or {})
        ref = str(details.get("case_ref") or "").strip()[:100]
        if not ref or purpose == "data-subject-access":
            continue
        case = found.setdefault(ref, {"purpose": purpose or "unknown", "actors": []})
        if actor not in case["actors"]:
            case["actors"].append(actor)
    now = datetime.now(UTC)
    users = dict(bind.execute(sa.text("SELECT username, id FROM users")).all())
    for ref, case in found.items():
        case_id = bind.execute(cases.insert().values(
            ref=ref, title=f"From searches made before cases existed ({ref})"[:200], purpose=case["purpose"][:64],
            expires_on=(now + timedelta(days=1)).date(), status="incomplete", created_at=now,
            created_by="migration 0017",
        )).inserted_primary_key[0]
        for actor in case["actors"]:
            if actor in users:
                bind.execute(members.insert().values(case_id=case_id, user_id=users[actor], added_at=now,
                                                     added_by="migration 0017"))


def downgrade() -> None:
    with op.batch_alter_table('case_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_members_user_id'))
        batch_op.drop_index(batch_op.f('ix_case_members_case_id'))
    op.drop_table('case_members')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_status'))
    op.drop_table('cases')
