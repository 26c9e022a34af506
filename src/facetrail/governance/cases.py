"""Cases: the record a search is made under (EU AI Act Art. 26(10): authorisation per case).

A case has a reference, a title, one of the configured purposes, the authority that authorised
it with that authorisation's reference and date (or, on the urgent path, the time by which the
authorisation must arrive: 48 hours), its members (who may search under it), an expiry date
and a status. Supervisors open, amend and close cases; every change is in the audit log.

A case is usable for a search while it is open, not expired, its authorisation is on record
(or still within the urgent window), and the searcher is a member. References that were typed
freely into searches before cases existed became cases of status `incomplete` (migration
0017): a supervisor completes them (`amend` with the authorisation) before they are used again.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import Refused
from ..store import Approval, AuditEntry, Confirmation
from ..store.models import Case, CaseMember, User
from . import audit
from .actors import Actor
from .roles import can

URGENT_WINDOW = timedelta(hours=48)  # Art. 26(10): authorisation requested without delay, within 48 h
MAX_DAYS = 366  # a case runs for a year at most; a longer one is renewed (amended) on the record
REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,99}")  # printable, no spaces: easy to quote

OPEN, CLOSED, INCOMPLETE = "open", "closed", "incomplete"


class CaseRefused(Refused):
    """A case operation or a search under a case that the rules do not allow."""

    code = "case_refused"


class CaseNotFound(Refused):
    """No case by that reference (or none the caller may see: the same answer)."""

    code = "not_found"  # the same answer as any other id or reference of nothing


@dataclass(frozen=True)
class Authorisation:
    """Who authorised the case: the authority, its reference and date; or, on the urgent path,
    only the authority (asked), with the authorisation due within URGENT_WINDOW."""

    authority: str
    reference: str | None = None
    on: date | None = None
    urgent: bool = False

    def check(self) -> None:
        plain(self.authority, "authority", 255)
        plain(self.reference or "", "authorisation reference", 255)
        if not self.authority.strip():
            raise CaseRefused("name the authority that authorised the case (--authority)")
        if self.urgent and (self.reference or self.on):
            raise CaseRefused("an urgent case has no authorisation yet: give --urgent, or its reference and date")
        if not self.urgent and not (self.reference and self.reference.strip() and self.on):
            raise CaseRefused("give the authorisation's reference and date (--authorisation-ref, --authorised-on), "
                              "or --urgent when it is requested and must follow within 48 hours")
        if self.on and self.on > datetime.now(UTC).date():
            raise CaseRefused("the authorisation date is in the future")


def now() -> datetime:
    return datetime.now(UTC)


def plain(value: str, what: str, limit: int) -> str:
    """`value` stripped, if it is one line of printable text of at most `limit` characters."""
    value = value.strip()
    if len(value) > limit or any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in value):
        raise CaseRefused(f"the {what} must be one line of plain text, at most {limit} characters")
    return value


def _supervisor(actor: Actor) -> None:
    if not can(actor.role, "approve"):
        raise CaseRefused("only supervisors open, amend and close cases")


def _reference(ref: str) -> str:
    ref = ref.strip()
    if not REFERENCE.fullmatch(ref):
        raise CaseRefused("a case reference is 1-100 letters, digits and . _ / : - (no spaces), starting with "
                          "a letter or digit")
    return ref


def _expiry(expires_on: date) -> date:
    today = now().date()
    if expires_on <= today:
        raise CaseRefused("the expiry date must be after today")
    if expires_on > today + timedelta(days=MAX_DAYS):
        raise CaseRefused(f"a case runs for {MAX_DAYS} days at most; renew it later with `case amend --expires`")
    return expires_on


def _find(session: Session, ref: str) -> Case | None:
    """The case by reference (no query for what cannot be one: too long, or a NUL)."""
    ref = ref.strip()
    return None if len(ref) > 100 or "\x00" in ref else session.scalar(select(Case).where(Case.ref == ref))


def get(session: Session, ref: str) -> Case:
    case = _find(session, ref)
    if case is None:
        raise CaseNotFound(f"no case {ref.strip()!r}")
    return case


def _authorise(case: Case, authorisation: Authorisation) -> None:
    authorisation.check()
    case.authority = authorisation.authority.strip()
    case.authorisation_ref = authorisation.reference.strip() if authorisation.reference else None
    case.authorised_on = authorisation.on
    if authorisation.urgent:
        case.urgent_due = case.urgent_due or now() + URGENT_WINDOW  # re-stating urgency never extends it
    else:
        case.urgent_due = None


def _details(case: Case) -> dict:
    """What the audit entry of a change says about the case (its purpose is the entry's purpose)."""
    return {
        "case_ref": case.ref, "title": case.title, "authority": case.authority,
        "authorisation_ref": case.authorisation_ref,
        "authorised_on": case.authorised_on.isoformat() if case.authorised_on else None,
        "urgent_due": case.urgent_due.isoformat() if case.urgent_due else None,
        "expires_on": case.expires_on.isoformat(), "status": case.status,
    }


def open_case(session: Session, actor: Actor, *, ref: str, title: str, purpose: str, purposes: list[str],
              authorisation: Authorisation, expires_on: date, members: list[str] = ()) -> Case:
    """Open a case (supervisors); recorded as `case.open`."""
    _supervisor(actor)
    ref = _reference(ref)
    if purpose not in purposes:
        raise CaseRefused(f"unknown purpose {purpose!r}: choose one of {', '.join(purposes)}")
    if not plain(title, "title", 200):
        raise CaseRefused("give the case a title")
    if session.scalar(select(Case.id).where(Case.ref == ref)) is not None:
        raise CaseRefused(f"a case {ref!r} exists already")
    case = Case(ref=ref, title=title.strip()[:200], purpose=purpose, expires_on=_expiry(expires_on), status=OPEN,
                created_at=now(), created_by=actor.username)
    _authorise(case, authorisation)
    session.add(case)
    session.flush()
    audit.record(session, actor, "case.open", purpose, **_details(case))
    for username in members:
        add_member(session, actor, ref, username)
    return case


def amend(session: Session, actor: Actor, ref: str, *, title: str | None = None,
          authorisation: Authorisation | None = None, expires_on: date | None = None) -> Case:
    """Change a case's title, authorisation or expiry (supervisors); recorded as `case.amend` with
    the values before and after. Completing an `incomplete` case (authorisation and expiry given)
    opens it."""
    _supervisor(actor)
    case = get(session, ref)
    if case.status == CLOSED:
        raise CaseRefused(f"case {case.ref!r} is closed; open a new case")
    before = _details(case)
    if title is not None:
        if not plain(title, "title", 200):
            raise CaseRefused("give the case a title")
        case.title = title.strip()[:200]
    if authorisation is not None:
        _authorise(case, authorisation)
    if expires_on is not None:
        case.expires_on = _expiry(expires_on)
    if case.status == INCOMPLETE:
        if authorisation is None or expires_on is None:
            raise CaseRefused(f"case {case.ref!r} came from free-text searches: complete it with its authorisation "
                              "and an expiry date")
        case.status = OPEN
    audit.record(session, actor, "case.amend", case.purpose, case_ref=case.ref, before=before, after=_details(case))
    return case


def close(session: Session, actor: Actor, ref: str, reason: str) -> Case:
    """Close a case (supervisors): no new searches under it; what was found stays readable."""
    _supervisor(actor)
    if not plain(reason, "reason", 1000):
        raise CaseRefused("say why the case is closed")
    case = get(session, ref)
    if case.status == CLOSED:
        raise CaseRefused(f"case {case.ref!r} is closed already")
    case.status, case.closed_at, case.closed_by = CLOSED, now(), actor.username
    audit.record(session, actor, "case.close", case.purpose, case_ref=case.ref, reason=reason.strip())
    return case


def add_member(session: Session, actor: Actor, ref: str, username: str) -> None:
    """Let an investigator or supervisor search under a case (supervisors); recorded."""
    _supervisor(actor)
    case = get(session, ref)
    if case.status == CLOSED:
        raise CaseRefused(f"case {case.ref!r} is closed")
    user = session.scalar(select(User).where(User.username == plain(username, "user name", 64)))
    if user is None:
        raise CaseRefused(f"no user {username.strip()!r}")
    if not can(user.role, "search"):
        raise CaseRefused(f"{user.username!r} is {user.role} and cannot search")
    if session.scalar(select(CaseMember.id).where(CaseMember.case_id == case.id, CaseMember.user_id == user.id)):
        raise CaseRefused(f"{user.username!r} is a member of {case.ref!r} already")
    session.add(CaseMember(case_id=case.id, user_id=user.id, added_at=now(), added_by=actor.username))
    audit.record(session, actor, "case.add_member", case.purpose, case_ref=case.ref, user=user.username)


def remove_member(session: Session, actor: Actor, ref: str, username: str) -> None:
    """Stop a user searching under a case (supervisors); recorded."""
    _supervisor(actor)
    case = get(session, ref)
    member = session.scalar(select(CaseMember).join(User).where(CaseMember.case_id == case.id,
                                                                User.username == plain(username, "user name", 64)))
    if member is None:
        raise CaseRefused(f"{username.strip()!r} is not a member of {case.ref!r}")
    session.delete(member)
    audit.record(session, actor, "case.remove_member", case.purpose, case_ref=case.ref, user=username.strip())


def members(session: Session, case: Case) -> list[str]:
    return list(session.scalars(select(User.username).join(CaseMember).where(CaseMember.case_id == case.id)
                                .order_by(User.username)))


def state(case: Case, at: datetime | None = None) -> str:
    """open, closed, incomplete, expired, or overdue (urgent, authorisation not arrived in time)."""
    at = at or now()
    if case.status != OPEN:
        return case.status
    if case.expires_on < at.date():
        return "expired"
    if case.urgent_due is not None and case.urgent_due < at:
        return "overdue"
    return OPEN


WHY_NOT = {
    CLOSED: "is closed",
    INCOMPLETE: "came from free-text searches and must be completed by a supervisor (its authorisation and expiry)",
    "expired": "has expired; a supervisor may renew it",
    "overdue": "was opened as urgent and its authorisation did not arrive within 48 hours",
}


def for_search(session: Session, actor: Actor, ref: str) -> Case:
    """The case `actor` searches under: open, in date, authorised (or within the urgent window),
    with `actor` a member. Refused otherwise; a case the actor is not a member of is refused like
    one that does not exist (nobody learns other cases' references by guessing)."""
    case = _find(session, ref)
    member = case is not None and session.scalar(
        select(CaseMember.id).join(User).where(CaseMember.case_id == case.id, User.username == actor.username))
    if not member:
        raise CaseNotFound(f"no open case {ref.strip()!r} that you are a member of; a supervisor opens cases "
                           "and adds their members")
    current = state(case)
    if current != OPEN:
        raise CaseRefused(f"case {case.ref!r} {WHY_NOT[current]}")
    return case


def describe(session: Session, case: Case) -> dict:
    """A case as listed and shown: its fields, current state and members."""
    return {"id": case.id, **_details(case), "purpose": case.purpose, "state": state(case),
            "created_at": case.created_at.isoformat(), "created_by": case.created_by,
            "closed_at": case.closed_at.isoformat() if case.closed_at else None, "closed_by": case.closed_by,
            "members": members(session, case)}


def listing(session: Session, actor: Actor, *, status: str | None = None) -> list[dict]:
    """Cases newest first: every case for supervisors, auditors and admins; for an investigator,
    the cases they are a member of."""
    query = select(Case).order_by(Case.id.desc())
    if not (can(actor.role, "approve") or can(actor.role, "audit.read")):
        query = query.join(CaseMember).join(User).where(User.username == actor.username)
    cases = [describe(session, case) for case in session.scalars(query)]
    return [case for case in cases if status is None or case["state"] == status]


def _visible(session: Session, actor: Actor, ref: str) -> Case:
    """The case, for supervisors, auditors, admins and its members; others are told it does not exist."""
    case = _find(session, ref)
    sees_all = can(actor.role, "approve") or can(actor.role, "audit.read")
    if case is None or not (sees_all or actor.username in members(session, case)):
        raise CaseNotFound(f"no case {ref.strip()!r}")
    return case


def ref_of(session: Session, actor: Actor, case_id: int) -> str:
    """The reference of case `case_id`, if `actor` may see it (URLs name cases by id: references
    may hold characters a path cannot)."""
    ref = session.scalar(select(Case.ref).where(Case.id == case_id)) if 0 < case_id < 2**31 else None
    if ref is None:
        raise CaseNotFound(f"no case {case_id}")
    _visible(session, actor, ref)
    return ref


def show(session: Session, actor: Actor, ref: str) -> dict:
    """One case's record, for those who may list it."""
    return describe(session, _visible(session, actor, ref))


KINDS = ("search", "decision", "confirmation", "watch", "export", "case")  # what a case page can be filtered by
DECIDED = {"search.approve": "approved", "search.deny": "denied"}


def _line(entry: AuditEntry, kind: str, summary: str, **extra) -> dict:
    return {"kind": kind, "entry_id": entry.id, "at": entry.created_at.isoformat(timespec="seconds"),
            "user": entry.actor, "summary": summary, **extra}


def _search_line(entry: AuditEntry, approval: Approval | None) -> dict:
    details = entry.details
    state = approval.state if approval is not None else "none"
    return _line(entry, "search", f"searched ({details.get('mode', 'faces')}): {details.get('result_count', 0)} "
                 f"results, {details.get('outcome', 'ok')}", search_id=entry.id, purpose=entry.purpose,
                 justification=details.get("justification"), approval=state,
                 policy=approval.policy if approval is not None else details.get("approval_policy"))


def activity(session: Session, actor: Actor, ref: str, *, kind: str | None = None, user: str | None = None) -> dict:
    """A case's record and what happened under it, oldest first: its searches (who, when, why,
    result count, approval state; a watch's hits are searches too), supervisors' decisions on
    them, confirmations of matches (and verifications: two people), its watches' requests,
    approvals, renewals and stops, evidence exports, and the changes to the case itself; each
    line names the audit entry behind it. Optionally only one kind of line, or one user's."""
    case = _visible(session, actor, ref)
    entries = list(session.scalars(
        select(AuditEntry).where(AuditEntry.details["case_ref"].as_string() == case.ref).order_by(AuditEntry.id)))
    searches = {e.id: e for e in entries if e.action == "search"}
    approvals = {a.search_id: a for a in session.scalars(select(Approval).where(Approval.search_id.in_(searches)))}
    decisions = session.scalars(select(AuditEntry).where(AuditEntry.action.in_(DECIDED))
                                .where(AuditEntry.details["search_id"].as_integer().in_(searches))) if searches else []
    lines = [_search_line(e, approvals.get(e.id)) for e in searches.values()]
    lines += [_line(e, "decision", f"{DECIDED[e.action]} search {e.details['search_id']}: "
                    f"{e.details.get('reason', '')}", search_id=e.details["search_id"]) for e in decisions]
    lines += [_line(e, "confirmation", f"confirmed face {e.details.get('face_id')} of search "
                    f"{e.details.get('search_id')} ({e.details.get('state', '')})", search_id=e.details.get("search_id"))
              for e in entries if e.action == "match.confirm"]
    lines += [_line(e, "watch", f"watch {e.details.get('watch_id')}: {e.action.split('.', 1)[1]}")
              for e in entries if e.action.startswith("watch.")]
    lines += [_line(e, "export", f"exported an evidence package of {len(e.details.get('searches') or [])} "
                    f"search(es), sha256 {str(e.details.get('package_sha256', ''))[:16]}…")
              for e in entries if e.action == "evidence.export"]
    lines += [_line(e, "case", e.action.split(".", 1)[1].replace("_", " ")) for e in entries
              if e.action.startswith("case.")]
    lines = [line for line in lines if (kind is None or line["kind"] == kind) and (not user or line["user"] == user)]
    lines.sort(key=lambda line: line["entry_id"])
    confirmed = session.scalars(select(Confirmation).where(Confirmation.case_ref == case.ref)).all()
    by_face: dict[int, set[str]] = {}
    for row in confirmed:
        by_face.setdefault(row.face_id, set()).add(row.username)
    return {"case": describe(session, case), "lines": lines, "kinds": KINDS,
            "searches": len(searches), "verified_faces": sorted(f for f, who in by_face.items() if len(who) >= 2),
            "confirmed_faces": sorted(by_face)}
