"""The verifiable audit log's costs (issue 14): what the Merkle tree adds to each audit entry,
and proof size and time when the log is large. Prints figures; asserts nothing.

1. `audit.record` in its own transaction, as a search writes it, on a fresh database: entries
   per second, and the part of each record spent on the tree (`audittree.append`).
2. For each SIZE: a tree of SIZE leaves written straight into audit_leaves/audit_nodes (leaves
   are generated, not recorded through searches), then: `audit.record` at that size (the
   O(log n) append), the tree head, inclusion and consistency proofs (time, hashes, bytes),
   their verification, and signing a checkpoint.

    .venv/bin/python bench/audit.py [SIZE ...]          # default: 1000000 10000000; 0: the appends only
    FACETRAIL_BENCH_POSTGRES=postgresql+psycopg://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/audit.py 1000000
"""

from __future__ import annotations

import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, insert, text

from facetrail.config import Settings
from facetrail.governance import audit, audittree, checkpoints, merkle
from facetrail.governance.actors import Actor
from facetrail.store import Database
from facetrail.store.models import AuditLeaf, AuditNode

ACTOR = Actor("ivan", "investigator", "cli")
BATCH = 50_000


def fresh(prefix: str) -> tuple[Settings, Database]:
    """A new database: SQLite in a temporary folder, or a new PostgreSQL database on the server of
    FACETRAIL_BENCH_POSTGRES (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres)."""
    server, url = os.environ.get("FACETRAIL_BENCH_POSTGRES"), None
    if server:
        name = f"facetrail_bench_audit_{uuid.uuid4().hex[:8]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = server.rsplit("/", 1)[0] + "/" + name
        print(f"  (PostgreSQL database {name}; drop it afterwards)")
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix=f"facetrail-bench-audit-{prefix}-")), database_url=url)
    return settings, Database(settings.db_url)


def one_search_entry(session, i: int):
    """An entry the size of a real search's (justification, case, 10 results, index snapshot)."""
    return audit.record(session, ACTOR, "search", "trust-and-safety", justification="benchmark " * 5,
                        case_ref=f"B-{i}", query_sha256=hashlib.sha256(str(i).encode()).hexdigest(),
                        results=[[i * 10 + k, 0.41 + k / 100] for k in range(10)],
                        index={"kind": "faiss", "size": 1_000_000, "version": 7})


def timed_records(db: Database, count: int, start: int = 0) -> tuple[list[float], list[float]]:
    """(seconds per record including commit, seconds per tree append) for `count` records."""
    totals, tree = [], []
    real_append = audittree.append

    def timed_append(*args):
        t = time.perf_counter()
        result = real_append(*args)
        tree.append(time.perf_counter() - t)
        return result

    audittree.append = timed_append
    try:
        for i in range(start, start + count):
            t = time.perf_counter()
            with db.session() as session, session.begin():
                one_search_entry(session, i)
            totals.append(time.perf_counter() - t)
    finally:
        audittree.append = real_append
    return totals, tree


def ms(values: list[float]) -> str:
    values = sorted(values)
    return (f"median {statistics.median(values) * 1000:.3f} ms, p99 {values[int(len(values) * 0.99)] * 1000:.3f} ms")


def append_throughput(count: int = 3000) -> None:
    settings, db = fresh("append")
    totals, tree = timed_records(db, count)
    print(f"audit.record, {count} entries, one transaction each ({db.engine.dialect.name}): "
          f"{count / sum(totals):.0f} entries/s; per entry {ms(totals)}; of which the Merkle tree {ms(tree)}")
    with db.session() as session:
        t = time.perf_counter()
        walked = audit.walk(session)
        took = time.perf_counter() - t
    assert walked.problem is None
    print(f"audit verify's walk (chain, leaves, tree head recomputed): {walked.count / took:.0f} entries/s")


def fill(db: Database, size: int) -> None:
    """A tree of `size` generated leaves, written in batches; only the right edge kept in memory."""
    edge: dict[int, bytes] = {}  # level -> the newest complete subtree there (what appended reads)
    leaves, nodes = [], []
    start = time.perf_counter()
    with db.engine.begin() as conn:
        for position in range(size):
            leaf = merkle.leaf_hash(position.to_bytes(8, "big"))
            made = merkle.appended(position, leaf, lambda level, _: edge[level])
            leaves.append({"position": position, "entry_id": -(position + 1), "hash": leaf.hex()})
            for level, pos, value in made:
                edge[level] = value
                if level:
                    nodes.append({"level": level, "position": pos, "hash": value.hex()})
            if len(leaves) >= BATCH:
                conn.execute(insert(AuditLeaf), leaves)
                conn.execute(insert(AuditNode), nodes)
                leaves, nodes = [], []
        if leaves:
            conn.execute(insert(AuditLeaf), leaves)
        if nodes:
            conn.execute(insert(AuditNode), nodes)
    if db.engine.dialect.name == "postgresql":  # statistics, as autovacuum keeps them for a table grown slowly
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE audit_leaves"))
            conn.execute(text("ANALYZE audit_nodes"))
    print(f"  filled {size:,} leaves in {time.perf_counter() - start:.0f} s")


def at_size(size: int, rounds: int = 200) -> None:
    settings, db = fresh(str(size))
    print(f"tree of {size:,} leaves ({db.engine.dialect.name}):")
    fill(db, size)
    totals, tree = timed_records(db, rounds, start=size)
    print(f"  audit.record at this size: {ms(totals)}; of which the Merkle append {ms(tree)}")
    n = size + rounds
    rng = random.Random(9162)
    with db.session() as session:
        t = time.perf_counter()
        head = audittree.root(session, n)
        print(f"  tree head: {(time.perf_counter() - t) * 1000:.2f} ms")
        proofs, checks, hashes = [], [], []
        for _ in range(rounds):
            index = rng.randrange(n)
            t = time.perf_counter()
            proof = audittree.inclusion_proof(session, index, n)
            proofs.append(time.perf_counter() - t)
            leaf = audittree.leaf_at(session, index)[1]
            t = time.perf_counter()
            assert merkle.verify_inclusion(index, n, leaf, proof, head)
            checks.append(time.perf_counter() - t)
            hashes.append(len(proof))
        print(f"  inclusion proof: {ms(proofs)}, {max(hashes)} hashes ({max(hashes) * 32} bytes); "
              f"verify {ms(checks)}")
        proofs, hashes = [], []
        for _ in range(rounds // 4):
            old = rng.randrange(1, n)
            t = time.perf_counter()
            proof = audittree.consistency_proof(session, old, n)
            proofs.append(time.perf_counter() - t)
            assert merkle.verify_consistency(old, n, proof, audittree.root(session, old), head)
            hashes.append(len(proof))
        print(f"  consistency proof: {ms(proofs)}, up to {max(hashes)} hashes ({max(hashes) * 32} bytes)")
    key = checkpoints.ensure_key(settings)[0]
    signs = []
    for _ in range(20):
        t = time.perf_counter()
        with db.session() as session, session.begin():
            checkpoints.make(session, settings, key)
        signs.append(time.perf_counter() - t)
    print(f"  checkpoint (tree head, Ed25519 signature, stored): {ms(signs)}")
    db.close()


def main(sizes: list[int]) -> None:
    append_throughput()
    for size in sizes:
        at_size(size)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:] if int(arg) > 0] if sys.argv[1:] else [1_000_000, 10_000_000])
