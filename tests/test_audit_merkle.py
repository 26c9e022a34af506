"""The Merkle tree of the audit log hashes, proves and verifies as RFC 9162 says: checked
against the Certificate Transparency reference vectors (google/certificate-transparency
merkle_tree_test.cc, the same inputs every RFC 6962/9162 implementation tests with) and
against the RFC's plain recursive definition for every size and pair of sizes up to 70."""

from __future__ import annotations

import hashlib

import pytest

from facetrail.governance import merkle
from facetrail.governance.merkle import MemoryTree

INPUTS = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f")]
ROOTS = ["e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
         "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
         "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
         "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
         "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
         "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
         "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
         "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
         "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"]
INCLUSION = [  # (leaf index, tree size, proof)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH as RFC 9162 2.1.1 defines it, recursively over the whole list."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


@pytest.fixture(scope="module")
def reference() -> MemoryTree:
    return MemoryTree(merkle.leaf_hash(data) for data in INPUTS)


def test_tree_heads_match_the_reference_at_every_size(reference):
    assert [reference.root(size).hex() for size in range(9)] == ROOTS


@pytest.mark.parametrize(("index", "size", "expected"), INCLUSION)
def test_inclusion_proofs_match_the_reference(reference, index, size, expected):
    proof = merkle.inclusion_proof(index, size, reference.get)
    assert [p.hex() for p in proof] == expected
    leaf = merkle.leaf_hash(INPUTS[index])
    assert merkle.verify_inclusion(index, size, leaf, proof, bytes.fromhex(ROOTS[size]))
    assert not merkle.verify_inclusion(index, size, merkle.leaf_hash(b"changed"), proof, bytes.fromhex(ROOTS[size]))
    assert not merkle.verify_inclusion(index, size, leaf, proof, bytes.fromhex(ROOTS[size - 1]))


@pytest.mark.parametrize(("old", "new", "expected"), CONSISTENCY)
def test_consistency_proofs_match_the_reference(reference, old, new, expected):
    proof = merkle.consistency_proof(old, new, reference.get)
    assert [p.hex() for p in proof] == expected
    assert merkle.verify_consistency(old, new, proof, bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new]))
    if old != new:
        assert not merkle.verify_consistency(old, new, proof, bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new]))


def test_every_proof_of_every_size_verifies_and_nothing_false_does():
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(70)]
    tree = MemoryTree(leaves)
    for size in range(1, 71):
        head = tree.root(size)
        assert head == reference_root(leaves[:size])
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, tree.get)
            assert merkle.verify_inclusion(index, size, leaves[index], proof, head)
            assert not merkle.verify_inclusion(index, size, leaves[(index + 1) % 70], proof, head)
            assert not merkle.verify_inclusion(index, size, leaves[index], proof[:-1], head) or size == 1
        for old in range(0, size + 1):
            proof = merkle.consistency_proof(old, size, tree.get)
            assert merkle.verify_consistency(old, size, proof, tree.root(old), head)
            if 0 < old < size:  # a different old head (a rewritten prefix) is caught
                assert not merkle.verify_consistency(old, size, proof, tree.root(old - 1), head)
                assert not merkle.verify_consistency(old, size, proof, tree.root(old), tree.root(size - 1))


def test_an_append_stores_only_the_subtrees_it_completes():
    tree = MemoryTree()
    reads: list[tuple[int, int]] = []
    for position in range(1024):
        made = merkle.appended(position, merkle.leaf_hash(b"x"), lambda lv, p: reads.append((lv, p)) or
                               tree.nodes[(lv, p)])
        for level, pos, value in made:
            tree.nodes[(level, pos)] = value
        tree.size += 1
        assert len(made) <= 11  # log2(1024) + 1: never a rebuild
    assert len(tree.nodes) == 2047  # every perfect subtree exactly once
    assert len(reads) == 1023


def test_the_frontier_gives_every_tree_head_in_little_memory():
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(300)]
    frontier = merkle.Frontier()
    for size, leaf in enumerate(leaves, 1):
        frontier.append(leaf)
        assert frontier.root() == reference_root(leaves[:size])
        assert len(frontier.edge) == bin(size).count("1")
    assert merkle.Frontier().root() == bytes.fromhex(ROOTS[0])


def test_needed_lists_the_subtrees_a_proof_reads(reference):
    keys = merkle.needed(lambda get: merkle.inclusion_proof(5, 8, get))
    assert keys == {(0, 4), (1, 3), (2, 0)}
