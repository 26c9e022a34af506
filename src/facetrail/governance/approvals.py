"""Approval policies: which searches a supervisor must approve, before or after the fact.

Per role (FACETRAIL_APPROVAL_POLICY): `none`; `review` (results are shown, a supervisor
reviews the search afterwards); `prior` (results are withheld until a supervisor approves;
meanwhile only the query face's descriptor is held, and it is deleted at the decision).
An `urgent` search (for roles in FACETRAIL_URGENT_ROLES) shows results at once but must be
approved within FACETRAIL_URGENT_HOURS; past that it is flagged as overdue. A subject access
report is held like a prior search (policy `subject-access`) and decided by a second admin, not
by a supervisor. Nobody decides on their own search, and every decision is recorded with its
reason.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import Refused
from ..store import Approval, AuditEntry
from . import audit
from .accounts import Actor

POLICIES = ("none", "review", "prior")  # what a role's searches may be under (settings)
SUBJECT_ACCESS = "subject-access"  # a subject access report, decided by a second admin
HELD = ("prior", SUBJECT_ACCESS)  # results withheld until approved (the descriptor is held)
DECIDED_WITH = {SUBJECT_ACCESS: "subject.report"}  # the permission that decides; others: "approve"
# Row ids are INTEGER columns: 32-bit on PostgreSQL. An id outside is no row (never a query).
MAX_ROW_ID = 2**31 - 1


def is_row_id(value: object) -> bool:
    """Whether `value` can be a row's id (an int from 1 to MAX_ROW_ID): anything else is not found."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ROW_ID


def may_decide(actor: Actor, approval: Approval) -> bool:
    return actor.can(DECIDED_WITH.get(approval.policy, "approve"))


class ApprovalError(Refused):
    """A refused approval action, with a message for a person."""

    code = "not_decided"


def policy_for(settings: Settings, actor: Actor, urgent: bool) -> str:
    if urgent:
        if actor.role not in settings.urgent_roles:
            raise ApprovalError(f"the {actor.role} role may not make urgent searches")
        return "urgent"
    policy = settings.approval_policy.get(actor.role, "review")
    if policy not in POLICIES:
        raise ValueError(f"approval policy for {actor.role} must be one of {POLICIES}, not {policy!r}")
    return policy


def open_approval(
    session: Session,
    settings: Settings,
    search: AuditEntry,
    actor: Actor,
    policy: str,
    held: np.ndarray | None,
    note: str | None = None,
) -> Approval:
    now = datetime.now(UTC)
    approval = Approval(
        search_id=search.id,
        requester=actor.username,
        policy=policy,
        state="pending",
        created_at=now,
        due_at=now + timedelta(hours=settings.urgent_hours) if policy == "urgent" else None,
        held_embedding=np.asarray(held, np.float32).tobytes() if held is not None else None,
        note=note,
    )
    session.add(approval)
    session.flush()
    return approval


def is_overdue(approval: Approval) -> bool:
    due = approval.due_at
    return approval.state == "pending" and due is not None and due < datetime.now(UTC)


def describe(approval: Approval) -> dict:
    return {
        "id": approval.id,
        "search_id": approval.search_id,
        "policy": approval.policy,
        "state": approval.state,
        "requester": approval.requester,
        "created_at": approval.created_at.isoformat(),
        "due_at": approval.due_at.isoformat() if approval.due_at else None,
        "overdue": is_overdue(approval),
        "decided_by": approval.decided_by,
        "reason": approval.reason,
        "note": approval.note,
    }


def pending(session: Session, subject_access: bool = False) -> list[tuple[Approval, AuditEntry]]:
    """Undecided searches, oldest first, with their audit entries (purpose, case, ...): the
    supervisors' queue, or (`subject_access`) the subject access reports waiting for an admin."""
    policy = Approval.policy == SUBJECT_ACCESS if subject_access else Approval.policy != SUBJECT_ACCESS
    rows = session.execute(
        select(Approval, AuditEntry)
        .join(AuditEntry, AuditEntry.id == Approval.search_id)
        .where(Approval.state == "pending", policy)
        .order_by(Approval.id)
    )
    return [(approval, entry) for approval, entry in rows]


def queue(session: Session) -> list[dict]:
    """The supervisors' queue as plain data: each pending approval with what its search's audit
    entry says (purpose, justification, case, result count). Both front doors show this."""
    return [
        {
            **describe(approval),
            "purpose": entry.purpose,
            "justification": entry.details.get("justification"),
            "case_ref": entry.details.get("case_ref"),
            "result_count": entry.details.get("result_count"),
        }
        for approval, entry in pending(session)
    ]


def requests(session: Session, policy: str) -> list[tuple[Approval, AuditEntry]]:
    """Every search under `policy` (any state), oldest first, with its audit entry."""
    rows = session.execute(
        select(Approval, AuditEntry).join(AuditEntry, AuditEntry.id == Approval.search_id)
        .where(Approval.policy == policy).order_by(Approval.id)
    )
    return [(approval, entry) for approval, entry in rows]


def decide(session: Session, actor: Actor, approval_id: int, approve: bool, reason: str) -> tuple[Approval, bool]:
    """Approve or deny; returns the approval and whether it was overdue. The caller runs a prior
    search's query after approval and records the decision (see Searcher.decide)."""
    if not (actor.can("approve") or actor.can("subject.report")):
        raise ApprovalError(f"the {actor.role} role may not approve searches", "not_permitted")
    reason = (reason or "").strip()
    if not reason:
        raise ApprovalError("a decision needs a reason")
    approval = session.get(Approval, approval_id) if is_row_id(approval_id) else None
    if approval is None or not may_decide(actor, approval):  # a supervisor sees no subject access request
        raise ApprovalError(f"there is no approval {approval_id}", "not_found")
    if approval.state != "pending":
        raise ApprovalError(f"approval {approval_id} was already decided ({approval.state})", "already_decided")
    if approval.requester == actor.username:
        raise ApprovalError("nobody may decide on their own search")
    overdue = is_overdue(approval)
    approval.state = "approved" if approve else "denied"
    approval.decided_by, approval.decided_at, approval.reason = actor.username, datetime.now(UTC), reason
    return approval, overdue


def record_decision(session: Session, actor: Actor, approval: Approval, overdue: bool, **extra) -> None:
    """The decision's audit entry; `extra`: more of its details (e.g. result_photos)."""
    audit.record(
        session,
        actor,
        "search.approve" if approval.state == "approved" else "search.deny",
        approval_id=approval.id,
        search_id=approval.search_id,
        policy=approval.policy,
        requester=approval.requester,
        reason=approval.reason,
        overdue=overdue,
        results=approval.results,
        result_count=None if approval.results is None else len(approval.results),
        **extra,
    )
