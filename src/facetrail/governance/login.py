"""Sign-in throttling, counted from the audit log (like search limits: governance/limits.py).

Every failed sign-in is a `login.failed` entry naming the username tried and the client
address. Before a password is checked, three rules look at the recent failures; each lets a
few failures pass, then makes the next attempt wait, twice as long after every further
failure, up to a cap (the wait runs from the latest failure):

- per client address (any username): slows one machine guessing many accounts;
- per (username, address): slows one machine guessing one account;
- per username from anywhere: a short slowdown against guesses spread over many addresses.
  It does not apply from an address where the account signed in successfully in the last
  30 days, so a stranger's failures elsewhere never keep the owner out of their account.

A refusal is `LoginThrottled` (code `rate_limited`, with `retry_after`), recorded as a
`login.throttled` entry once per rule and wait (hammering cannot flood the log). The rules
count usernames as typed, whether or not such an account exists, so the answers are the
same for every name. No account is ever locked: there is nothing a stranger can do to
stop the owner signing in from their own address.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import Refused
from ..store import AuditEntry
from . import audit

LOCAL = "local"  # the client address of attempts made without a network peer (the command line)
KNOWN_ADDRESS_DAYS = 30


@dataclass(frozen=True)
class Rule:
    name: str  # "address", "account_address" or "account"
    free: int  # failures within `window` that cost nothing
    window: timedelta
    first_wait: timedelta  # after `free` failures; doubled after each further one
    max_wait: timedelta

    def wait(self, failures: int) -> timedelta:
        if failures < self.free:
            return timedelta(0)
        return min(self.first_wait * 2 ** min(failures - self.free, 20), self.max_wait)


RULES = (
    Rule("address", free=10, window=timedelta(hours=1), first_wait=timedelta(minutes=1), max_wait=timedelta(hours=1)),
    Rule("account_address", free=5, window=timedelta(hours=1), first_wait=timedelta(minutes=1),
         max_wait=timedelta(hours=1)),
    Rule("account", free=10, window=timedelta(minutes=15), first_wait=timedelta(seconds=15),
         max_wait=timedelta(minutes=1)),
)


class LoginThrottled(Refused):
    """Too many failed sign-ins: try again after `retry_after` seconds."""

    code = "rate_limited"

    def __init__(self, retry_after: float) -> None:
        minutes = max(1, round(retry_after / 60))
        wait = f"{round(retry_after)} seconds" if retry_after < 90 else f"{minutes} minutes"
        super().__init__(f"too many failed sign-ins: try again in {wait}", retry_after=retry_after)


def _now() -> datetime:
    return datetime.now(UTC)


def _detail(name: str):
    return AuditEntry.details[name].as_string()


def _failures(session: Session, rule: Rule, username: str, client: str, at: datetime) -> list[datetime]:
    """When the failures counted by `rule` happened (newest first), within its window."""
    query = select(AuditEntry.created_at).where(
        AuditEntry.action == "login.failed", AuditEntry.created_at >= at - rule.window, AuditEntry.created_at <= at)
    if rule.name in ("address", "account_address"):
        query = query.where(_detail("client") == client)
    if rule.name in ("account", "account_address"):
        query = query.where(_detail("user") == username)
    return list(session.scalars(query.order_by(AuditEntry.created_at.desc())))


def known_address(session: Session, username: str, client: str, at: datetime | None = None) -> bool:
    """Whether `username` signed in successfully from `client` in the last 30 days."""
    at = at or _now()
    return session.scalar(
        select(AuditEntry.id).where(
            AuditEntry.actor == username, AuditEntry.action == "login",
            AuditEntry.created_at >= at - timedelta(days=KNOWN_ADDRESS_DAYS), _detail("client") == client,
        ).limit(1)
    ) is not None


def wait(session: Session, username: str, client: str, at: datetime | None = None) -> tuple[Rule, float] | None:
    """The rule that makes an attempt by `username` from `client` wait now (or at `at`), and
    for how many seconds more; None if the attempt may go ahead."""
    at = at or _now()
    longest: tuple[Rule, float] | None = None
    for rule in RULES:
        if rule.name == "account" and known_address(session, username, client, at):
            continue
        times = _failures(session, rule, username, client, at)
        remaining = (times[0] + rule.wait(len(times)) - at).total_seconds() if times else 0.0
        if remaining > 0 and (longest is None or remaining > longest[1]):
            longest = (rule, remaining)
    return longest


def check(session: Session, username: str, client: str | None, via: str) -> None:
    """Raise LoginThrottled (after recording it) if this attempt must wait; else nothing.
    The caller commits the session even when this raises."""
    client = client or LOCAL
    found = wait(session, username, client)
    if found is None:
        return
    rule, remaining = found
    until = _now() + timedelta(seconds=remaining)
    already = session.scalar(
        select(AuditEntry.id).where(
            AuditEntry.action == "login.throttled", AuditEntry.created_at >= _now() - rule.max_wait,
            _detail("user") == username, _detail("client") == client, _detail("rule") == rule.name,
            _detail("until") >= (until - timedelta(seconds=1)).isoformat(timespec="seconds"),
        ).limit(1)
    )
    if already is None:
        audit.record(session, None, "login.throttled", user=username, via=via, client=client, rule=rule.name,
                     until=until.isoformat(timespec="seconds"))
    raise LoginThrottled(remaining)
