"""The audit log: append-only, hash-chained entries written in the caller's transaction, each
also a leaf of a Merkle tree (RFC 9162) that signed checkpoints commit to (checkpoints.py).

Each entry's hash is sha256(previous hash + canonical JSON of the entry), so editing,
deleting, inserting or reordering entries breaks the chain, which `verify` detects. Its leaf is
SHA-256(0x00 || `leaf_data(entry)`), appended to the stored tree (audittree.py) in the same
transaction; `walk` recomputes the tree from the entries, so truncating, wiping or rewriting
the whole log is caught against a checkpoint taken before (checkpoints.verify_log).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import Refused

from ..store import AuditEntry
from ..store.db import write_lock
from . import audittree, merkle

if TYPE_CHECKING:
    from .actors import Actor

GENESIS = "0" * 64


def _body(entry: AuditEntry) -> dict:
    return {
        "created_at": entry.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "actor_kind": entry.actor_kind,
        "action": entry.action,
        "purpose": entry.purpose,
        "details": entry.details,
    }


def _json(body: dict) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(entry: AuditEntry) -> str:
    """The hashed content of an entry: every field except id and the hashes, as canonical JSON."""
    return _json(_body(entry))


def entry_hash(prev_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256((prev_hash + canonical(entry)).encode()).hexdigest()


def leaf_data(entry: AuditEntry) -> bytes:
    """What an entry's Merkle leaf hashes: its canonical JSON with its id, i.e. an exported line
    (`as_record`) without prev_hash and hash, as canonical UTF-8 JSON."""
    return _json({"id": entry.id, **_body(entry)}).encode()


def leaf(entry: AuditEntry) -> bytes:
    return merkle.leaf_hash(leaf_data(entry))


def catch_up(session: Session, before: int | None = None) -> int:
    """Put the entries written before the tree existed (migration 0013) into it: only when the tree
    is empty, never to absorb entries added behind facetrail's back later. Returns how many."""
    if audittree.size(session):
        return 0
    query = select(AuditEntry).order_by(AuditEntry.id)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    count = 0
    for entry in session.scalars(query.execution_options(yield_per=1000)):
        audittree.append(session, entry.id, leaf(entry))
        count += 1
    return count


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
    catch_up(session, before=entry.id)
    try:
        audittree.append(session, entry.id, leaf(entry))
    except IntegrityError:  # an entry id the tree already holds: entries were deleted behind our back
        raise Refused("the audit log was changed behind facetrail's back (an entry id its Merkle tree already "
                      "holds came back): nothing is recorded, so nothing is done, until it is checked: "
                      "facetrail audit verify --checkpoint WITNESS_FILE", code="audit_log_broken") from None
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


@dataclass
class Walk:
    """What `walk` found: entries checked, the first problem, and the tree heads recomputed from
    the entries themselves at the sizes asked for and at the end."""

    count: int = 0
    problem: Problem | None = None
    roots: dict[int, bytes] = field(default_factory=dict)
    head: bytes = merkle.EMPTY_ROOT


def _entry_problem(entry: AuditEntry, prev: str, stored: tuple[int, int, bytes] | None, computed: bytes) -> str | None:
    if entry.prev_hash != prev:
        return "previous hash does not match (entry deleted, inserted or moved)"
    if entry_hash(prev, entry) != entry.hash:
        return "content does not match its hash (entry edited)"
    if stored is None or stored[1] > entry.id:
        return "entry is not in the Merkle tree (written behind facetrail's back)"
    if stored[1] != entry.id:
        return f"Merkle leaf {stored[0]} belongs to entry {stored[1]}, which is gone (entries deleted)"
    if stored[2] != computed:
        return "entry does not match its Merkle leaf (entry or tree rewritten)"
    return None


def walk(session: Session, sizes: set[int] = frozenset()) -> Walk:
    """Recompute the chain and the Merkle tree from the entries, against the stored leaves and
    nodes; tree heads at `sizes` (checkpoints' tree sizes) are kept for checkpoints.verify_log."""
    result, prev, frontier = Walk(), GENESIS, merkle.Frontier()
    stored = audittree.leaves(session)
    for entry in entries(session):
        computed = leaf(entry)
        reason = _entry_problem(entry, prev, next(stored, None), computed)
        if reason:
            result.problem = Problem(entry.id, reason)
            break
        frontier.append(computed)
        prev, result.count = entry.hash, result.count + 1
        if result.count in sizes:
            result.roots[result.count] = frontier.root()
    result.head = frontier.root()
    if 0 in sizes:
        result.roots[0] = merkle.EMPTY_ROOT
    if result.problem is None:
        result.problem = _tree_problem(session, stored, result)
    return result


def _tree_problem(session: Session, stored: Iterator, result: Walk) -> Problem | None:
    extra = next(stored, None)
    if extra is not None:
        return Problem(extra[1], f"the Merkle tree holds leaf {extra[0]} for entry {extra[1]}, past the log's "
                                 f"last entry (entries deleted)")
    try:
        if audittree.root(session, result.count) != result.head:
            return Problem(0, "the stored Merkle tree's nodes do not match its leaves (tree rewritten)")
    except audittree.MissingNode as exc:
        return Problem(0, f"{exc} (tree rewritten)")
    return None


def verify(session: Session) -> tuple[int, Problem | None]:
    """Walk the chain and the tree; returns (entries checked, first problem or None)."""
    result = walk(session)
    return result.count, result.problem
