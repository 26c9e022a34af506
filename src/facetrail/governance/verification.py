"""Human verification of matches: results are leads until two different people confirm them.

A user confirms that a face returned by a search shows the person searched for, within that
search's case. One confirmation makes the match "confirmed"; a second one by a different
user makes it "verified". Both are recorded, in the audit log too.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import Refused
from ..store import AuditEntry, Confirmation
from . import audit
from .accounts import Actor

UNCONFIRMED, CONFIRMED, VERIFIED = "unconfirmed", "confirmed", "verified"


class VerificationError(Refused):
    """A refused confirmation, with a message for a person."""

    code = "not_confirmed"


def state(confirmed_by: list[str]) -> str:
    return VERIFIED if len(set(confirmed_by)) >= 2 else CONFIRMED if confirmed_by else UNCONFIRMED


def confirmations(session: Session, case_ref: str, face_ids: list[int]) -> dict[int, list[str]]:
    """face id -> users who confirmed it in this case, in order."""
    rows = session.execute(
        select(Confirmation.face_id, Confirmation.username)
        .where(Confirmation.case_ref == case_ref, Confirmation.face_id.in_(face_ids))
        .order_by(Confirmation.id)
    )
    found: dict[int, list[str]] = {}
    for face_id, username in rows:
        found.setdefault(face_id, []).append(username)
    return found


def confirm(session: Session, actor: Actor, search: AuditEntry, shown: set[int], face_id: int) -> dict:
    """Record `actor`'s confirmation of `face_id` as shown by `search`, whose results `actor` may see
    (`shown`: the face ids it shows them; the search layer decides who may see what)."""
    if not actor.can("search"):
        raise VerificationError(f"the {actor.role} role may not confirm matches", "not_permitted")
    if face_id not in shown:
        raise VerificationError(f"face {face_id} was not among the results of search {search.id}")
    case_ref = search.details["case_ref"]
    already = confirmations(session, case_ref, [face_id]).get(face_id, [])
    if actor.username in already:
        raise VerificationError("you have already confirmed this match; a different person must verify it",
                                "already_confirmed")
    session.add(
        Confirmation(
            case_ref=case_ref, face_id=face_id, search_id=search.id, username=actor.username,
            created_at=datetime.now(UTC),
        )
    )
    confirmed_by = [*already, actor.username]
    result = {"face_id": face_id, "case_ref": case_ref, "state": state(confirmed_by), "confirmed_by": confirmed_by}
    audit.record(session, actor, "match.confirm", search.purpose, search_id=search.id, **result)
    return result
