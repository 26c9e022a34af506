"""Search rate limits per role (and per user), counted from the audit log itself.

Counting recorded searches, rather than keeping counters, means the limits hold across
processes, machines and restarts, and cannot drift from what the log shows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import Refused
from ..store import AuditEntry

WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


class RateLimited(Refused):
    """A limit was reached; `retry_after` says in how many seconds to try again."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, retry_after=retry_after)


def check(session: Session, username: str, limits: dict[str, int]) -> None:
    """Raise RateLimited if `username` has used up a limit, e.g. {"hour": 30, "day": 200}."""
    now = datetime.now(UTC)
    for window, limit in limits.items():
        since = now - WINDOWS[window]
        # the limit-th newest search in the window, if there is one: one row read from the
        # (actor, action, created_at) index, however many searches the window holds
        nth = session.scalar(
            select(AuditEntry.created_at)
            .where(AuditEntry.action == "search", AuditEntry.actor == username, AuditEntry.created_at >= since)
            .order_by(AuditEntry.created_at.desc())
            .offset(limit - 1)
            .limit(1)
        ) if limit > 0 else now
        if nth is not None:
            retry = (nth + WINDOWS[window] - now).total_seconds()
            raise RateLimited(f"search limit reached: {limit} per {window}; try again later", max(1.0, retry))


def count(session: Session, username: str, window: str) -> int:
    since = datetime.now(UTC) - WINDOWS[window]
    return session.scalar(
        select(func.count())
        .select_from(AuditEntry)
        .where(AuditEntry.action == "search", AuditEntry.actor == username, AuditEntry.created_at >= since)
    )
