"""Reading the audit log: the newest entries matching a filter, with the chain's verification.

What an auditor browses (the web app's audit page). Reading is not itself recorded: it
changes nothing, and only people with `audit.read` are shown it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..store import AuditEntry
from . import audit
from .report import period

LIMIT = 500  # entries shown at once; narrower filters reach older ones


@dataclass(frozen=True)
class Listing:
    entries: list[AuditEntry]  # newest first, at most the limit
    more: bool  # more entries match than are listed
    actions: list[str]  # every action the log holds (for the filter's choices)
    checked: int  # entries whose hashes were verified
    problem: audit.Problem | None  # the first break in the chain, if any


def browse(
    session: Session,
    *,
    action: str | None = None,
    actor: str | None = None,
    case: str | None = None,
    start: date | None = None,
    end: date | None = None,
    limit: int = LIMIT,
) -> Listing:
    """The newest entries of one action, by one user (name), of one case reference, within
    [start, end] (UTC days); every filter is optional. The whole chain is verified too."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    if action:
        query = query.where(AuditEntry.action == action)
    if actor:
        query = query.where(AuditEntry.actor == actor.strip())
    if start or end:
        since, until = period(start or date(1970, 1, 1), end or datetime.now(UTC).date())
        query = query.where(AuditEntry.created_at >= since, AuditEntry.created_at < until)
    checked, problem = audit.verify(session)
    rows = list(session.scalars(query.limit(limit * 4 if case else limit + 1)))
    if case:  # the case reference lives in the entry's JSON details
        rows = [e for e in rows if e.details.get("case_ref") == case.strip()]
    actions = list(session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))
    return Listing(rows[:limit], len(rows) > limit, actions, checked, problem)
