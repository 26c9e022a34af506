"""Roles and what each may do. Fixed in code: separation of duties is not a setting."""

from __future__ import annotations

ROLES = ("admin", "supervisor", "investigator", "auditor")

PERMISSIONS: dict[str, frozenset[str]] = {
    "search": frozenset({"investigator", "supervisor"}),
    "approve": frozenset({"supervisor"}),
    "cases.read": frozenset({"investigator", "supervisor", "auditor", "admin"}),  # investigators: their own
    "audit.read": frozenset({"auditor", "supervisor", "admin"}),
    "users.manage": frozenset({"admin"}),
    "sources.manage": frozenset({"admin"}),
    "index.manage": frozenset({"admin"}),
    "subject.report": frozenset({"admin"}),
}


def can(role: str, permission: str) -> bool:
    return role in PERMISSIONS[permission]
