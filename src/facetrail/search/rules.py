"""The rules a search request must pass before anything is decoded or searched."""

from __future__ import annotations

from ..config import Settings
from ..errors import Refused
from ..governance import approvals
from ..governance.actors import Actor


class SearchRefused(Refused):
    """A search that policy does not allow; `code` says which rule (e.g. purpose_required)."""


def check_request(
    settings: Settings, actor: Actor, purpose: str, justification: str, case_ref: str, urgent: bool = False
) -> str:
    """Refuse (SearchRefused) a search the rules do not allow; returns its approval policy.
    Checked before anything is decoded or searched."""
    if not actor.can("search"):
        raise SearchRefused(f"the {actor.role} role may not search", "not_permitted")
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
