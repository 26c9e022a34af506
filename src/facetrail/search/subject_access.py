"""Subject access reports (admins): a recorded search with the reserved purpose
`data-subject-access`, held until a second admin approves, then a report of every indexed image
of the person, made for the admin who asked. Part of `Searcher` (a mixin: it uses the searcher's
database, index, face engine and rate check)."""

from __future__ import annotations

import hashlib
from datetime import date

from ..governance import approvals, audit
from ..governance.actors import Actor
from ..images.decode import DecodeError
from .rules import SUBJECT_ACCESS, SearchRefused, check_subject_access, no_such_search, visible_search

# Subject access reports: at most this many results, and (unless FACETRAIL_SEARCH_LIMITS or
# FACETRAIL_USER_SEARCH_LIMITS give admins their own) at most this many requests per admin.
SUBJECT_REPORT_SIZE = 1000
SUBJECT_ACCESS_LIMITS = {"hour": 5, "day": 20}


def request_details(actor: Actor, justification: str, case_ref: str, sha: str) -> dict:
    """Who searched, why, and the query's sha256: the part of the audit entry every search shares."""
    return {"role": actor.role, "justification": justification, "case_ref": case_ref, "query_sha256": sha}


class SubjectAccess:
    def request_subject_report(self, actor: Actor, photo: bytes, *, request_ref: str, received: date | None,
                               identity_check: str) -> dict:
        """Ask for a subject access report on the face in `photo` (admins): a recorded search with the
        reserved purpose `data-subject-access`, under the admins' rate limit, one per request
        reference. Nothing is searched yet: the face's descriptor is held until a second admin
        approves (`decide`); the report is then made by `subject_report`."""
        request_ref = check_subject_access(actor, request_ref, received, identity_check)
        self._check_rate(actor, SUBJECT_ACCESS_LIMITS)
        with self.db.session() as session:
            earlier = [a for a, e in approvals.requests(session, approvals.SUBJECT_ACCESS)
                       if e.details.get("request_ref") == request_ref and a.state != "denied"]
        if earlier:
            raise SearchRefused(f"request {request_ref} already has a subject access report (search "
                                f"{earlier[0].search_id}); a denied one may be asked again", "already_reported")
        try:
            _, faces = self.faces_in(photo)
        except DecodeError as exc:
            raise SearchRefused(f"not a usable image: {exc}", exc.reason) from None
        if not faces:
            raise SearchRefused("no face found in the photo", "no_face")
        sha = hashlib.sha256(photo).hexdigest()
        with self.db.session() as session, session.begin():
            entry = audit.record(
                session,
                actor,
                "search",
                SUBJECT_ACCESS,
                **{
                    "mode": "subject-access",
                    **request_details(actor, f"subject access request received {received.isoformat()}, "
                                              f"identity checked by {identity_check}", request_ref, sha),
                    "request_ref": request_ref,
                    "received": received.isoformat(),
                    "identity_check": identity_check,
                    "faces_found": len(faces),
                    "selected_face": 0,
                    "top_k": SUBJECT_REPORT_SIZE,
                    "threshold": self.match_threshold,
                    "model": self.engine.model_name,
                    "index": {"kind": self.index.kind, "size": len(self.index), "version": self.index.version},
                    "results": [],
                    "result_count": 0,
                    "approval_policy": approvals.SUBJECT_ACCESS,
                    "hold": None,
                    "outcome": "withheld",
                },
            )
            approval = approvals.open_approval(session, self.settings, entry, actor, approvals.SUBJECT_ACCESS,
                                               faces[0].embedding, f"subject access request {request_ref}")
            return {"request_ref": request_ref, "search_id": entry.id, "approval": approvals.describe(approval)}

    def subject_report(self, actor: Actor, search_id: int) -> dict:
        """The report of an approved subject access request, for the admin who asked for it: every
        indexed image whose face is within the match threshold, nearest first, with its locations
        and dates. Each report made is recorded (`subject_report`, with the result count)."""
        with self.db.session() as session, session.begin():
            seen = visible_search(session, actor, search_id)
            if seen.entry.purpose != SUBJECT_ACCESS:
                raise no_such_search(search_id)
            if not seen.shown:
                state = seen.approval.state if seen.approval else "pending"
                raise SearchRefused(f"subject access request {seen.entry.details['request_ref']} is {state}"
                                    + (": a second admin must approve it first" if state == "pending" else ""),
                                    "not_approved")
            ref = seen.entry.details["request_ref"]
            matches = self._matches(session, seen.hits, ref)
            entry = audit.record(
                session,
                actor,
                "subject_report",
                SUBJECT_ACCESS,
                request_ref=ref,
                search_id=search_id,
                approved_by=seen.approval.decided_by,
                results=[[m.face_id, round(m.distance, 6)] for m in matches],
                result_count=len(matches),
            )
            made_at = entry.created_at.isoformat()
            approved_by, audit_id = seen.approval.decided_by, entry.id
        return {
            "request_ref": ref,
            "search_id": search_id,
            "made_at": made_at,
            "made_by": actor.username,
            "approved_by": approved_by,
            "audit_id": audit_id,
            "threshold": self.match_threshold,
            "images": [
                {
                    "sha256": m.image["sha256"],
                    "locations": m.image["locations"],
                    "appearances": m.image["appearances"],
                    "width": m.image["width"],
                    "height": m.image["height"],
                    "first_seen": m.image["first_seen"],
                    "last_seen": m.image["last_seen"],
                    "face_box": list(m.box),
                    "distance": m.distance,
                }
                for m in matches
            ],
        }
