"""Merkle tree hashing, proofs and their verification, as in RFC 9162 (Certificate Transparency 2.0).

Plain functions over hashes (bytes). A tree is read through `get(level, position)`: the hash of
the perfect subtree of 2**level leaves that starts at leaf position * 2**level. Every range the
RFC's recursions ask for splits into such subtrees, so a store that keeps them (audit_leaves and
audit_nodes, see auditlog.py) answers a proof with O(log n) reads and appends in O(log n) writes.

- leaf hash: SHA-256(0x00 || entry), node hash: SHA-256(0x01 || left || right), empty: SHA-256("").
- `root(size, get)`, `inclusion_proof(index, size, get)`, `consistency_proof(old, new, get)`.
- `verify_inclusion` and `verify_consistency`: RFC 9162 sections 2.1.3.2 and 2.1.4.2.
- `appended(position, leaf, get)`: the subtrees a new leaf completes, to store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

Get = Callable[[int, int], bytes]  # (level, position) -> hash of that perfect subtree

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range(lo: int, hi: int, get: Get) -> bytes:
    """MTH(D[lo:hi]) for the ranges the RFC's recursions produce (lo aligned to the range's split)."""
    n = hi - lo
    if n & (n - 1) == 0:  # a perfect subtree, stored
        level = n.bit_length() - 1
        return get(level, lo >> level)
    k = _split(n)
    return node_hash(_range(lo, lo + k, get), _range(lo + k, hi, get))


def root(size: int, get: Get) -> bytes:
    """The tree head of the first `size` leaves."""
    return EMPTY_ROOT if size == 0 else _range(0, size, get)


def inclusion_proof(index: int, size: int, get: Get) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 2.1.3.1), leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(_range(lo + k, hi, get))
            hi = lo + k
        else:
            path.append(_range(lo, lo + k, get))
            lo += k
    return path[::-1]


def consistency_proof(old: int, new: int, get: Get) -> list[bytes]:
    """PROOF(old, D[0:new]) (RFC 9162 2.1.4.1): the old tree is a prefix of the new one."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    if old == 0 or old == new:
        return []
    proof: list[bytes] = []
    lo, hi, m, whole = 0, new, old, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(_range(lo + k, hi, get))
            hi = lo + k
        else:
            proof.append(_range(lo, lo + k, get))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        proof.append(_range(lo, hi, get))
    return proof[::-1]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Iterable[bytes], expected_root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does `proof` show `leaf` at `index` in the tree of `size` with this root?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == expected_root


def verify_consistency(old: int, new: int, proof: list[bytes], old_root: bytes, new_root: bytes) -> bool:
    """RFC 9162 2.1.4.2: is the tree of `old` leaves with `old_root` a prefix of the one of `new`?"""
    if not 0 <= old <= new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = [old_root, *proof] if old & (old - 1) == 0 else list(proof)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


def appended(position: int, leaf: bytes, get: Get) -> list[tuple[int, int, bytes]]:
    """The perfect subtrees (level, position, hash) a leaf at `position` completes, itself first:
    what an append stores. Reads one left sibling per level climbed (O(log n))."""
    made = [(0, position, leaf)]
    level, index, current = 0, position, leaf
    while index & 1:
        current = node_hash(get(level, index - 1), current)
        level, index = level + 1, index >> 1
        made.append((level, index, current))
    return made


def needed(compute: Callable[[Get], object]) -> set[tuple[int, int]]:
    """The subtrees `compute(get)` reads, found by running it against placeholder hashes: a
    store fetches them in one query, then runs it for real. (A proof's shape does not depend on
    the hashes it holds.)"""
    keys: set[tuple[int, int]] = set()

    def record(level: int, position: int) -> bytes:
        keys.add((level, position))
        return EMPTY_ROOT

    compute(record)
    return keys


class Frontier:
    """The right edge of a growing tree (one perfect subtree per bit of its size): tree heads of
    a stream of leaves in O(log n) memory, as `audit verify` walks the log."""

    def __init__(self) -> None:
        self.edge: list[tuple[int, bytes]] = []  # (level, hash), largest first
        self.size = 0

    def append(self, leaf: bytes) -> None:
        level, current = 0, leaf
        while self.edge and self.edge[-1][0] == level:
            current = node_hash(self.edge.pop()[1], current)
            level += 1
        self.edge.append((level, current))
        self.size += 1

    def root(self) -> bytes:
        if not self.edge:
            return EMPTY_ROOT
        current = self.edge[-1][1]
        for _, left in reversed(self.edge[:-1]):
            current = node_hash(left, current)
        return current


class MemoryTree:
    """A whole tree in memory (tests, the benchmark, and re-deriving a tree from exported entries)."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.size = 0
        for leaf in leaves:
            self.append(leaf)

    def get(self, level: int, position: int) -> bytes:
        return self.nodes[(level, position)]

    def append(self, leaf: bytes) -> None:
        for level, position, value in appended(self.size, leaf, self.get):
            self.nodes[(level, position)] = value
        self.size += 1

    def root(self, size: int | None = None) -> bytes:
        return root(self.size if size is None else size, self.get)
