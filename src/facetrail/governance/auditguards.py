"""The database's own guards of the audit log: the triggers that refuse UPDATE, DELETE (and
TRUNCATE on PostgreSQL) on the log, its Merkle tree and its checkpoints (migrations 0002, 0013).

Someone with the database file or a superuser can drop or disable them; checkpoints still catch
what they then do, but a missing guard is worth saying loudly: `audit verify`, `audit status`
and the server's start check them.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

GUARDED = ("audit_log", "audit_leaves", "audit_nodes", "audit_checkpoints")


def expected(dialect: str) -> list[str]:
    events = ("no_change", "no_truncate") if dialect == "postgresql" else ("no_update", "no_delete")
    return [f"{table}_{event}" for table in GUARDED for event in events]


def present(session: Session) -> set[str]:
    """The guard triggers that are in place and still refuse: a trigger of the right name whose
    body was replaced by one that lets the change through does not count."""
    if session.get_bind().dialect.name == "postgresql":  # enabled ones ('D': disabled) calling a raising function
        query = ("SELECT t.tgname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
                 "WHERE NOT t.tgisinternal AND t.tgenabled <> 'D' AND p.proname = 'facetrail_audit_append_only' "
                 "AND p.prosrc LIKE '%RAISE EXCEPTION%'")
        return set(session.scalars(text(query)))
    rows = session.execute(text("SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'"))
    return {name for name, table, sql in rows if name.startswith(table + "_no_") and "RAISE(ABORT" in sql.upper()}


def missing(session: Session) -> list[str]:
    """The append-only triggers that are gone or disabled (empty: all in place)."""
    have = present(session)
    return [name for name in expected(session.get_bind().dialect.name) if name not in have]


def warning(names: list[str]) -> str:
    return (f"AUDIT LOG UNGUARDED: the append-only trigger(s) {', '.join(names)} are missing or disabled; "
            "someone changed the database's schema. Check the log against a witnessed checkpoint "
            "(facetrail audit verify --checkpoint FILE) and restore them (docs/audit-verification.md).")
