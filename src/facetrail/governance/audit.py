"""The audit log: append-only, hash-chained entries written in the caller's transaction.

Each entry's hash is sha256(previous hash + canonical JSON of the entry), so editing,
deleting, inserting or reordering entries breaks the chain, which `verify` detects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ..store import AuditEntry
from ..store.db import write_lock

if TYPE_CHECKING:
    from .actors import Actor

GENESIS = "0" * 64


def canonical(entry: AuditEntry) -> str:
    """The hashed content of an entry: every field except id and the hashes, as canonical JSON."""
    body = {
        "created_at": entry.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "actor_kind": entry.actor_kind,
        "action": entry.action,
        "purpose": entry.purpose,
        "details": entry.details,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256((prev_hash + canonical(entry)).encode()).hexdigest()


def record(session: Session, actor: Actor | None, action: str, purpose: str | None = None, **details) -> AuditEntry:
    """Append an entry inside the session's current transaction (the caller commits): the one
    writer of the audit log. `actor` None is the system itself; an actor's name and kind (and
    for an account, the channel and operating-system user) come from the actor."""
    if actor is not None:
        details = {**actor.audit_details(), **details}
    name, kind = (actor.username, actor.kind) if actor is not None else ("system", "system")
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7010001)"))  # one writer extends the chain
    write_lock(session, "audit_log")  # SQLite: so the head read next stays the head
    last = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    entry = AuditEntry(
        created_at=datetime.now(UTC),
        actor=name,
        actor_kind=kind,
        action=action,
        purpose=purpose,
        details=json.loads(json.dumps(details)),  # plain JSON types only, as they will be read back
    )
    entry.prev_hash = last or GENESIS
    entry.hash = entry_hash(entry.prev_hash, entry)
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class Problem:
    entry_id: int
    reason: str


def entries(session: Session) -> Iterator[AuditEntry]:
    yield from session.scalars(select(AuditEntry).order_by(AuditEntry.id).execution_options(yield_per=1000))


def as_record(entry: AuditEntry) -> dict:
    """An entry as exported: its hashed content plus id and hashes, so a copy can be re-verified."""
    return {"id": entry.id, **json.loads(canonical(entry)), "prev_hash": entry.prev_hash, "hash": entry.hash}


def export(session: Session, since: datetime | None = None) -> Iterator[dict]:
    query = select(AuditEntry).order_by(AuditEntry.id)
    if since is not None:
        query = query.where(AuditEntry.created_at >= since)
    for entry in session.scalars(query.execution_options(yield_per=1000)):
        yield as_record(entry)


def verify(session: Session) -> tuple[int, Problem | None]:
    """Walk the chain; returns (entries checked, first problem or None)."""
    prev = GENESIS
    count = 0
    for entry in entries(session):
        if entry.prev_hash != prev:
            return count, Problem(entry.id, "previous hash does not match (entry deleted, inserted or moved)")
        if entry_hash(prev, entry) != entry.hash:
            return count, Problem(entry.id, "content does not match its hash (entry edited)")
        prev = entry.hash
        count += 1
    return count, None
