"""The rules of searching, in one place: what a request must pass before anything is decoded or
searched (`check_request`, `check_subject_access`), and who may see a recorded search and its
results now (`visible_search`): earlier results, face crops and thumbnails, confirmations and
subject access reports all ask `visible_search`, so they cannot disagree."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import Refused
from ..governance import approvals, cases
from ..governance.actors import Actor
from ..store import Approval, AuditEntry

# The purpose of a subject access report: reserved for it (never a normal search's purpose).
SUBJECT_ACCESS = "data-subject-access"
# How the person asking for their data proved who they are (one of these, recorded).
IDENTITY_CHECKS = ("id-document", "in-person", "signed-letter", "legal-representative")
# A request reference is an identifier from the organisation's register of requests, not a sentence:
# letters, digits and - _ / . (3 to 40), with at least one digit, e.g. DSR-2026-0042.
REQUEST_REF = re.compile(r"(?=.*\d)[A-Za-z0-9][A-Za-z0-9_./-]{2,39}")


class SearchRefused(Refused):
    """A search that policy does not allow; `code` says which rule (e.g. purpose_required)."""


def check_request(
    settings: Settings, actor: Actor, purpose: str, justification: str, case_ref: str, urgent: bool = False
) -> str:
    """Refuse (SearchRefused) a search the rules do not allow; returns its approval policy.
    Checked before anything is decoded or searched."""
    if not actor.can("search"):
        raise SearchRefused(f"the {actor.role} role may not search", "not_permitted")
    if purpose == SUBJECT_ACCESS:
        raise SearchRefused(f"the purpose {SUBJECT_ACCESS} is reserved for subject access reports "
                            "(facetrail subject-report)", "purpose_reserved")
    if purpose not in settings.purposes:
        raise SearchRefused(
            "a search needs a purpose: one of " + ", ".join(settings.purposes) + " (--purpose)", "purpose_required"
        )
    if not (justification or "").strip():
        raise SearchRefused(
            "a search needs a justification: say why this search is needed (--justification)", "justification_required"
        )
    if not (case_ref or "").strip():
        raise SearchRefused("a search needs a case reference (--case)", "case_ref_required")
    try:
        return approvals.policy_for(settings, actor, urgent)
    except approvals.ApprovalError as exc:
        raise SearchRefused(str(exc), "urgent_not_permitted") from None


def check_case(session: Session, actor: Actor, case_ref: str, purpose: str) -> str:
    """The reference of the case a search is made under: an open, authorised, unexpired case that
    `actor` is a member of (governance/cases.py `for_search`: CaseNotFound or CaseRefused
    otherwise), for the search's purpose."""
    case = cases.for_search(session, actor, case_ref)
    if case.purpose != purpose:
        raise SearchRefused(f"case {case.ref!r} is for {case.purpose}: search under it with that purpose",
                            "case_purpose_mismatch")
    return case.ref


def check_subject_access(actor: Actor, request_ref: str, received: date | None, identity_check: str) -> str:
    """Refuse a subject access request the rules do not allow; returns the request reference.
    Its approval policy is always `subject-access`: a second admin decides."""
    if not actor.can("subject.report"):
        raise SearchRefused(f"the {actor.role} role may not make subject access reports", "not_permitted")
    request_ref = (request_ref or "").strip()
    if not REQUEST_REF.fullmatch(request_ref):
        raise SearchRefused("a subject access report needs the request's reference from your register of "
                            "requests (--request-ref), e.g. DSR-2026-0042: 3-40 letters, digits and - _ / ., "
                            "with at least one digit", "request_ref_required")
    if received is None or received > datetime.now(UTC).date():
        raise SearchRefused("a subject access report needs the date the request was received "
                            "(--received YYYY-MM-DD, not in the future)", "request_date_required")
    if identity_check not in IDENTITY_CHECKS:
        raise SearchRefused("a subject access report needs how the person's identity was checked "
                            "(--identity-check): one of " + ", ".join(IDENTITY_CHECKS), "identity_check_required")
    return request_ref


# Who may see a recorded search


@dataclass
class Visible:
    """A recorded search the caller may see, and what of it they may see now."""

    entry: AuditEntry
    approval: Approval | None
    shown: bool  # its results may be seen now: not held for (or refused) approval
    hits: list[tuple[int, float]]  # (face id, distance) shown; empty while not shown
    copies: list[tuple[int, int]]  # (image id, bits apart) of a copy search
    photo_of: dict[int, int]  # face id -> the query photo it matched (several photos; else none)

    @property
    def face_ids(self) -> set[int]:
        return {face_id for face_id, _ in self.hits}


def no_such_search(search_id: int) -> SearchRefused:
    """The one answer for a search the caller may not see: unknown, someone else's, not a search."""
    return SearchRefused(f"there is no search {search_id}", "not_found")


def may_see(actor: Actor, entry: AuditEntry) -> bool:
    """A search is seen by the person who made it, or by a supervisor; a subject access report only
    by the admin who asked for it."""
    if entry.purpose == SUBJECT_ACCESS:
        return actor.can("subject.report") and entry.actor == actor.username
    return actor.can("search") and (entry.actor == actor.username or actor.can("approve"))


def visible_search(session: Session, actor: Actor, search_id: int) -> Visible:
    """The search `search_id` as `actor` may see it now, or SearchRefused `not_found` (the same
    for an unknown id, an id out of range, and someone else's search)."""
    entry = session.get(AuditEntry, search_id) if approvals.is_row_id(search_id) else None
    if entry is None or entry.action != "search" or not may_see(actor, entry):
        raise no_such_search(search_id)
    approval = session.scalar(select(Approval).where(Approval.search_id == search_id))
    held = approval is not None and approval.policy in approvals.HELD
    shown = not held or approval.state == "approved"
    hits = ((approval.results if held else entry.details.get("results")) or []) if shown else []
    copies = entry.details.get("copies", []) if shown else []
    recorded = entry  # where the photo each result matched is written: the search's entry, or its approval's
    if held and shown:
        recorded = session.scalar(select(AuditEntry).where(
            AuditEntry.action == "search.approve", AuditEntry.details["approval_id"].as_integer() == approval.id))
    photos = (recorded.details.get("result_photos") or []) if recorded is not None else []
    return Visible(entry, approval, shown, [(int(i), float(d)) for i, d in hits],
                   [(int(i), int(b)) for i, b in copies],
                   {int(hit[0]): int(photo) for hit, photo in zip(hits, photos)})
