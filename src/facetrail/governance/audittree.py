"""The audit log's Merkle tree in the database: leaves (one per entry, in order) and the perfect
subtrees above them. An append reads one sibling per level it climbs and writes the subtrees the
new leaf completes (O(log n), no rebuild); a proof reads its O(log n) subtrees in one query.

Hashes are given and returned as bytes; stored as hex. Which bytes an entry's leaf hashes is
audit.py's business (`audit.leaf`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ..store.models import AuditLeaf
from . import merkle


# Plain SQL, prepared once: an append is on every search's path, and building SQLAlchemy
# statements per call cost more than running them (bench/audit.py).
SIZE = text("SELECT max(position) FROM audit_leaves")
ADD_LEAF = text("INSERT INTO audit_leaves (position, entry_id, hash) "  # at the end: one round trip, not two
                "SELECT COALESCE(MAX(position) + 1, 0), :entry_id, :hash FROM audit_leaves RETURNING position")
ADD_NODE = text("INSERT INTO audit_nodes (level, position, hash) VALUES (:level, :position, :hash)")


def size(session: Session) -> int:
    last = session.connection().scalar(SIZE)
    return 0 if last is None else last + 1


def fetch(session: Session, keys: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored subtrees among `keys` ((level, position) pairs): leaves in one query, nodes in
    another, as point lookups OR'ed (each uses the primary key; a row-value IN scans the table
    on SQLite)."""
    found: dict[tuple[int, int], bytes] = {}
    conn = session.connection()
    leaves = sorted(position for level, position in keys if level == 0)
    nodes = sorted(key for key in keys if key[0] > 0)
    for start in range(0, len(leaves), 400):
        chunk = leaves[start:start + 400]
        sql = f"SELECT position, hash FROM audit_leaves WHERE position IN ({', '.join(f':p{i}' for i in range(len(chunk)))})"
        rows = conn.execute(text(sql), {f"p{i}": position for i, position in enumerate(chunk)})
        found.update({(0, position): bytes.fromhex(value) for position, value in rows})
    for start in range(0, len(nodes), 400):
        chunk = nodes[start:start + 400]
        terms = " OR ".join(f"(level = :l{i} AND position = :p{i})" for i in range(len(chunk)))
        params = {**{f"l{i}": level for i, (level, _) in enumerate(chunk)},
                  **{f"p{i}": position for i, (_, position) in enumerate(chunk)}}
        rows = conn.execute(text(f"SELECT level, position, hash FROM audit_nodes WHERE {terms}"), params)
        found.update({(level, position): bytes.fromhex(value) for level, position, value in rows})
    return found


class MissingNode(LookupError):
    """The stored tree lacks a subtree it should hold (rows deleted behind facetrail's back)."""


def run(session: Session, compute: Callable[[merkle.Get], object]):
    """`compute(get)` over the stored tree, its subtrees fetched at once beforehand."""
    stored = fetch(session, merkle.needed(compute))

    def get(level: int, position: int) -> bytes:
        try:
            return stored[(level, position)]
        except KeyError:
            raise MissingNode(f"the audit tree has no node at level {level}, position {position}") from None

    return compute(get)


def append(session: Session, entry_id: int, leaf: bytes) -> int:
    """Add entry `entry_id`'s leaf hash at the end, and the subtrees it completes; returns its
    position. The caller holds the audit log's write lock (audit.record), so positions follow
    entry order. One statement for every other leaf, three for the others."""
    conn = session.connection()
    position = conn.execute(ADD_LEAF, {"entry_id": entry_id, "hash": leaf.hex()}).scalar_one()
    made = run(session, lambda get: merkle.appended(position, leaf, get))
    if len(made) > 1:
        conn.execute(ADD_NODE, [{"level": level, "position": pos, "hash": value.hex()}
                                for level, pos, value in made[1:]])
    return position


def root(session: Session, tree_size: int) -> bytes:
    return run(session, lambda get: merkle.root(tree_size, get))


def inclusion_proof(session: Session, index: int, tree_size: int) -> list[bytes]:
    return run(session, lambda get: merkle.inclusion_proof(index, tree_size, get))


def consistency_proof(session: Session, old: int, new: int) -> list[bytes]:
    return run(session, lambda get: merkle.consistency_proof(old, new, get))


def position_of(session: Session, entry_id: int) -> int | None:
    return session.scalar(select(AuditLeaf.position).where(AuditLeaf.entry_id == entry_id))


def leaf_at(session: Session, position: int) -> tuple[int, bytes] | None:
    """(entry id, leaf hash) of one position."""
    row = session.execute(select(AuditLeaf.entry_id, AuditLeaf.hash).where(AuditLeaf.position == position)).first()
    return None if row is None else (row[0], bytes.fromhex(row[1]))


def leaves(session: Session) -> Iterator[tuple[int, int, bytes]]:
    """(position, entry id, leaf hash) in order."""
    query = select(AuditLeaf.position, AuditLeaf.entry_id, AuditLeaf.hash).order_by(AuditLeaf.position)
    for position, entry_id, value in session.execute(query.execution_options(yield_per=5000)):
        yield position, entry_id, bytes.fromhex(value)
